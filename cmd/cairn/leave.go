package main

import "io"

// `cairn leave` is `consul leave` (command/leave in hashicorp/consul).

const leaveHelp = `
Usage: cairn leave [options]

  Makes the agent leave the cluster gracefully, so the other members see
  it as "left" rather than "failed", and shut down.
`

func runLeave(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn leave", leaveHelp, false)
	client, code := c.connect(fs, args)
	if client == nil {
		return code
	}
	if err := client.Agent().Leave(); err != nil {
		c.error("Error leaving: %s", err)
		return 1
	}
	c.info("Graceful leave complete")
	return 0
}
