package main

import "io"

// `cairn join` is `consul join` (command/join in hashicorp/consul), without
// -wan: cairn has no WAN pool.

const joinHelp = `
Usage: cairn join [options] ADDRESS...

  Tells a running agent to join the cluster by contacting at least one of
  its members, at host or host:port (the gossip port, 8301 by default).
`

func runJoin(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn join", joinHelp, false)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	addrs := fs.Args()
	if len(addrs) == 0 {
		c.error("At least one address to join must be specified.")
		c.error("")
		fs.Usage()
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	// One request per address, as consul does: each gets its own error.
	joins := 0
	for _, addr := range addrs {
		if err := client.Agent().Join(addr, false); err != nil {
			c.error("Error joining address '%s': %s", addr, err)
			continue
		}
		joins++
	}
	if joins == 0 {
		c.error("Failed to join any nodes.")
		return 1
	}
	c.info("Successfully joined cluster by contacting %d nodes.", joins)
	return 0
}
