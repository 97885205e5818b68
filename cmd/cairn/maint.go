package main

import (
	"io"
	"sort"
	"strings"
)

// `cairn maint` is `consul maint` (Consul's command/maint): the same
// calls (the agent's node name, then /v1/agent/maintenance,
// /v1/agent/service/maintenance/<id> or, to list, /v1/agent/checks) and
// the same output.

const maintHelp = `
Usage: cairn maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance.
`

func runMaint(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn maint", maintHelp, false)
	enable := fs.Bool("enable", false, "Enable maintenance mode.")
	disable := fs.Bool("disable", false, "Disable maintenance mode.")
	reason := fs.String("reason", "", "Text describing the maintenance reason.")
	serviceID := fs.String("service", "", "Control maintenance mode for a specific service ID.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	switch {
	case *enable && *disable:
		c.error("Only one of -enable or -disable may be provided")
		return 1
	case !*enable && *reason != "":
		c.error("Reason may only be provided with -enable")
		return 1
	case !*enable && !*disable && *serviceID != "":
		c.error("Service requires either -enable or -disable")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	a := client.Agent()
	nodeName, err := a.NodeName()
	if err != nil {
		c.error("Error querying cairn agent: %s", err)
		return 1
	}
	switch {
	case *enable && *serviceID == "":
		if err := a.EnableNodeMaintenance(*reason); err != nil {
			c.error("Error enabling node maintenance: %s", err)
			return 1
		}
		c.info("Node maintenance is now enabled")
	case *enable:
		if err := a.EnableServiceMaintenance(*serviceID, *reason); err != nil {
			c.error("Error enabling service maintenance: %s", err)
			return 1
		}
		c.info("Service maintenance is now enabled for %q", *serviceID)
	case *disable && *serviceID == "":
		if err := a.DisableNodeMaintenance(); err != nil {
			c.error("Error disabling node maintenance: %s", err)
			return 1
		}
		c.info("Node maintenance is now disabled")
	case *disable:
		if err := a.DisableServiceMaintenance(*serviceID); err != nil {
			c.error("Error disabling service maintenance: %s", err)
			return 1
		}
		c.info("Service maintenance is now disabled for %q", *serviceID)
	default:
		checks, err := a.Checks()
		if err != nil {
			c.error("Error getting checks: %s", err)
			return 1
		}
		// Consul ranges over a map; sorted here so the order is stable
		// (the node first: "_node..." sorts before "_service...").
		ids := make([]string, 0, len(checks))
		for id := range checks {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			check := checks[id]
			if check.CheckID == "_node_maintenance" {
				c.info("Node:\n  Name:   %s\n  Reason: %s\n", nodeName, check.Notes)
			} else if strings.HasPrefix(check.CheckID, "_service_maintenance:") {
				c.info("Service:\n  ID:     %s\n  Reason: %s\n", check.ServiceID, check.Notes)
			}
		}
	}
	return 0
}
