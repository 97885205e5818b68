package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// `cairn info` is `consul info`: /v1/agent/self's Stats, section by
// section, keys sorted.

const infoHelp = `
Usage: cairn info [options]

  Shows the agent's state for debugging: build, agent, raft, serf and
  runtime counters, and the VIP allocator when there is one.
`

func runInfo(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn info", infoHelp, false)
	client, code := c.connect(fs, args)
	if client == nil {
		return code
	}
	self, err := client.Agent().Self()
	if err != nil {
		c.error("Error querying agent: %s", err)
		return 1
	}
	stats := self["Stats"]
	fmt.Fprint(stdout, infoText(stats))
	return 0
}

// infoText lays out the stats sections as consul info does:
// "section:" then "\tkey = value" lines.
func infoText(stats map[string]any) string {
	var b strings.Builder
	for _, sec := range slices.Sorted(maps.Keys(stats)) {
		fmt.Fprintf(&b, "%s:\n", sec)
		vals, _ := stats[sec].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(vals)) {
			fmt.Fprintf(&b, "\t%s = %v\n", k, vals[k])
		}
	}
	return b.String()
}
