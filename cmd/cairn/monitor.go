package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// `cairn monitor` is `consul monitor`: streams the agent's log.

const monitorHelp = `
Usage: cairn monitor [options]

  Shows the agent's log as it is written, until interrupted, at the
  level given (which may be more detailed than the agent's own).
`

func runMonitor(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn monitor", monitorHelp, false)
	level := fs.String("log-level", "info", "Log level of the lines shown: trace, debug, info, warn or err.")
	asJSON := fs.Bool("log-json", false, "Show the lines as JSON.")
	client, code := c.connect(fs, args)
	if client == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	monitor := client.Agent().Monitor
	if *asJSON {
		monitor = client.Agent().MonitorJSON
	}
	lines, err := monitor(*level, ctx.Done(), nil)
	if err != nil {
		c.error("Error starting monitor: %s", err)
		return 1
	}
	for {
		select {
		case <-ctx.Done():
			return 0
		case line, ok := <-lines:
			if !ok {
				c.error("Remote side ended the monitor! This usually means that the remote side has exited or crashed.")
				return 1
			}
			fmt.Fprintln(stdout, line)
		}
	}
}
