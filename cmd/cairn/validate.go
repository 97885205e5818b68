package main

import (
	"fmt"
	"io"
	"os"
)

// `cairn validate` is `consul validate`: it loads config files and dirs
// the way `cairn agent -config-file/-config-dir` does (the same loader, so
// the two never disagree) and judges the result by the agent's own rules,
// without starting anything.

const validateHelp = `
Usage: cairn validate [options] FILE_OR_DIRECTORY...

  Loads the config files and directories (*.hcl and *.json, in lexical
  order) as "cairn agent -config-file/-config-dir" would, later ones
  winning, and checks the resulting configuration. Prints "Configuration
  is valid!" and exits 0, or prints what is wrong and exits 1. Nothing is
  started or written, so it suits ExecStartPre= of a systemd unit.
`

func runValidate(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.bareFlagSet("cairn validate", validateHelp)
	quiet := fs.Bool("quiet", false, "Print nothing when the configuration is valid.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() == 0 {
		c.error("Must specify at least one config file or directory")
		fs.Usage()
		return 1
	}
	var agentArgs []string
	for _, p := range fs.Args() {
		st, err := os.Stat(p)
		if err != nil {
			c.error("Config validation failed: %v", err)
			return 1
		}
		if st.IsDir() {
			agentArgs = append(agentArgs, "-config-dir", p)
		} else {
			agentArgs = append(agentArgs, "-config-file", p)
		}
	}
	cfg, err := loadAgentConfig(agentArgs, stderr)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		c.error("Config validation failed: %v", err)
		return 1
	}
	if !*quiet {
		fmt.Fprintln(stdout, "Configuration is valid!")
	}
	return 0
}
