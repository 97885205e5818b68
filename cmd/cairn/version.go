package main

import (
	"fmt"
	"io"

	"github.com/cairn-dev/cairn/agent"
)

// runVersion prints the version the way `consul version` does.
func runVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "Cairn v%s\n", agent.Version)
	if rev, ok := agent.Revision(); ok {
		fmt.Fprintf(stdout, "Revision %s\n", rev)
	}
	return 0
}
