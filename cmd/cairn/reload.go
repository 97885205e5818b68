package main

import "io"

// `cairn reload` is `consul reload`: PUT /v1/agent/reload.

const reloadHelp = `
Usage: cairn reload [options]

  Makes the agent re-read its configuration files and flags: services,
  checks, templates and the log level change without a restart. A new
  configuration with an error is refused and the running one is kept;
  the error says what was wrong. SIGHUP does the same.
`

func runReload(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn reload", reloadHelp, false)
	client, code := c.connect(fs, args)
	if client == nil {
		return code
	}
	if err := client.Agent().Reload(); err != nil {
		c.error("Error reloading: %s", err)
		return 1
	}
	c.info("Configuration reload triggered")
	return 0
}
