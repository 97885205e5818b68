package main

import (
	"io"

	"github.com/hashicorp/consul/api"
)

// `cairn force-leave` is `consul force-leave` (command/forceleave in
// hashicorp/consul), without -wan: cairn has no WAN pool. Like consul it
// prints nothing on success.

const forceLeaveHelp = `
Usage: cairn force-leave [options] NODE

  Forces a member of the cluster into the "left" state. Use it for
  "failed" members that are never coming back; otherwise the cluster keeps
  trying to reach them until the reconnect timeout reaps them. A member
  that is in fact alive rejoins.
`

func runForceLeave(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn force-leave", forceLeaveHelp, false)
	prune := fs.Bool("prune", false, "Remove the member from the list of members entirely.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		c.error("A single node name must be specified to force leave.")
		c.error("")
		fs.Usage()
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	if err := client.Agent().ForceLeaveOpts(fs.Arg(0), api.ForceLeaveOpts{Prune: *prune}); err != nil {
		c.error("Error force leaving: %s", err)
		return 1
	}
	return 0
}
