package main

import (
	"io"

	"github.com/cairn-dev/cairn/agent/membership"
)

// `cairn keygen` is `consul keygen`: a new gossip encryption key, for
// -encrypt (or "encrypt" in a config file) on every agent.

const keygenHelp = `
Usage: cairn keygen

  Prints a new 32-byte gossip encryption key in base64, the form -encrypt
  takes. Give every agent of the cluster the same key.
`

func runKeygen(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.bareFlagSet("cairn keygen", keygenHelp)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	key, err := membership.GenerateKey()
	if err != nil {
		c.error("Error! %s", err)
		return 1
	}
	c.info("%s", key)
	return 0
}
