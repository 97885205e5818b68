package main

import (
	"io"
	"regexp"

	"github.com/hashicorp/consul/api"
)

// `cairn event` is `consul event` (Consul's command/event): the agent's
// node name (to check it answers), then /v1/event/fire/<name>; it prints
// "Event ID: <id>".

const eventHelp = `
Usage: cairn event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.
`

func runEvent(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn event", eventHelp, true)
	name := fs.String("name", "", "Name of the event.")
	node := fs.String("node", "", "Regular expression to filter on node names.")
	service := fs.String("service", "", "Regular expression to filter on service instances.")
	tag := fs.String("tag", "", "Regular expression to filter on service tags. Must be used with -service.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	switch {
	case *name == "":
		c.error("Event name must be specified")
		c.error("")
		fs.Usage()
		return 1
	case *tag != "" && *service == "":
		c.error("Cannot provide tag filter without service filter.")
		return 1
	}
	for _, f := range []struct{ what, re string }{{"node", *node}, {"service", *service}, {"tag", *tag}} {
		if f.re == "" {
			continue
		}
		if _, err := regexp.Compile(f.re); err != nil {
			c.error("Failed to compile %s filter regexp: %v", f.what, err)
			return 1
		}
	}
	var payload []byte
	switch fs.NArg() {
	case 0:
	case 1:
		payload = []byte(fs.Arg(0))
	default:
		c.error("Too many command line arguments.")
		fs.Usage()
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	if _, err := client.Agent().NodeName(); err != nil {
		c.error("Error querying cairn agent: %s", err)
		return 1
	}
	id, _, err := client.Event().Fire(&api.UserEvent{Name: *name, Payload: payload, NodeFilter: *node, ServiceFilter: *service, TagFilter: *tag}, nil)
	if err != nil {
		c.error("Error firing event: %s", err)
		return 1
	}
	c.info("Event ID: %s", id)
	return 0
}
