package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/cairn-dev/cairn/agent"
)

// versionInfo is what `cairn version -json` prints: consul version
// -format=json's Version and Revision, and the Go build's platform.
type versionInfo struct {
	Version   string
	Revision  string // "" when the build recorded none (go run, -buildvcs=false)
	GoVersion string
	Platform  string // GOOS/GOARCH
}

func currentVersion() versionInfo {
	rev, _ := agent.Revision()
	return versionInfo{
		Version:   agent.Version,
		Revision:  rev,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
}

const versionHelp = `
Usage: cairn version [-json]

  Prints the cairn version and the revision it was built from.
`

// runVersion prints the version the way `consul version` does, or as one
// JSON object with -json (-format=json, consul's spelling, too).
func runVersion(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.bareFlagSet("cairn version", versionHelp)
	asJSON := fs.Bool("json", false, "Print a JSON object (Version, Revision, GoVersion, Platform).")
	format := fs.String("format", "pretty", `Output format, "pretty" or "json" (as consul version -format).`)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	switch *format {
	case "pretty":
	case "json":
		*asJSON = true
	default:
		c.error("Invalid format %q: use pretty or json", *format)
		return 1
	}
	return printVersion(stdout, currentVersion(), *asJSON)
}

func printVersion(w io.Writer, v versionInfo, asJSON bool) int {
	if asJSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			panic(err) // a struct of strings always marshals
		}
		fmt.Fprintf(w, "%s\n", b)
		return 0
	}
	fmt.Fprintf(w, "Cairn v%s\n", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(w, "Revision %s\n", v.Revision)
	}
	return 0
}
