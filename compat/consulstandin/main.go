// Command consulstandin stands in for the `consul` binary that
// github.com/hashicorp/consul/sdk/testutil runs, so that consul/api's own
// tests start cairn instead. It answers `consul version -format=json`
// itself (testutil reads the version to decide which ports to configure)
// and hands every other invocation, unchanged, to the cairn binary that
// sits next to it (or $CAIRN_BIN): `consul agent -config-file f.json`
// becomes `cairn agent -config-file f.json`, so the config testutil wrote
// is loaded as any Consul config file would be.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// consulVersion is the Consul release whose API cairn follows; testutil
// only compares it with 1.14 (to add the grpc_tls port).
const consulVersion = "1.20.6"

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "version" {
		for _, a := range args[1:] {
			if a == "-format=json" || a == "--format=json" {
				json.NewEncoder(os.Stdout).Encode(map[string]any{"Version": consulVersion, "Revision": "", "Prerelease": "", "RPC": map[string]int{"Default": 2, "Min": 2, "Max": 3}})
				return
			}
		}
		fmt.Printf("Consul v%s (cairn stand-in)\n", consulVersion)
		return
	}
	bin, err := cairnBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "consulstandin:", err)
		os.Exit(1)
	}
	// Exec, not a child: testutil signals and waits for this very process.
	err = syscall.Exec(bin, append([]string{"cairn"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "consulstandin: exec %s: %v\n", bin, err)
	os.Exit(1)
}

// cairnBinary is $CAIRN_BIN, else the cairn next to this executable.
func cairnBinary() (string, error) {
	if b := os.Getenv("CAIRN_BIN"); b != "" {
		return b, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	b := filepath.Join(filepath.Dir(self), "cairn")
	if _, err := os.Stat(b); err != nil {
		return "", errors.New("no cairn binary next to " + self + "; build one there or set CAIRN_BIN")
	}
	return b, nil
}
