package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/consul/api"
)

// `cairn rtt` is `consul rtt` (Consul's command/rtt): LAN coordinates
// from /v1/coordinate/nodes (the second node defaults to the agent's), or
// with -wan the servers' from /v1/coordinate/datacenters, named
// <node>.<dc>; it prints Consul's line.

const rttHelp = `
Usage: cairn rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using the network
  coordinate model of the cluster. If the second node name isn't given, it
  is set to the agent's node name. With -wan, the servers' WAN coordinates
  are used and the node names must be suffixed by a period and the
  datacenter (eg. "myserver.dc1").
`

func runRTT(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn rtt", rttHelp, false)
	wan := fs.Bool("wan", false, "Use WAN coordinates instead of LAN coordinates.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	nodes := fs.Args()
	if len(nodes) < 1 || len(nodes) > 2 {
		c.error("One or two node names must be specified")
		c.error("")
		fs.Usage()
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	var coord1, coord2 *api.CoordinateEntry
	source := "LAN"
	if *wan {
		source = "WAN"
		if len(nodes) < 2 {
			self, err := client.Agent().Self()
			if err != nil {
				c.error("Unable to look up agent info: %s", err)
				return 1
			}
			nodes = append(nodes, fmt.Sprintf("%s.%s", self["Config"]["NodeName"], self["Config"]["Datacenter"]))
		}
		p1, p2 := strings.Split(nodes[0], "."), strings.Split(nodes[1], ".")
		if len(p1) != 2 || len(p2) != 2 {
			c.error("Node names must be specified as <node name>.<datacenter> with -wan")
			return 1
		}
		dcs, err := client.Coordinate().Datacenters()
		if err != nil {
			c.error("Error getting coordinates: %s", err)
			return 1
		}
		for _, dc := range dcs {
			for _, e := range dc.Coordinates {
				// cairn names WAN entries <node>.<dc>, as Consul's servers do.
				name := strings.TrimSuffix(e.Node, "."+dc.Datacenter)
				if dc.Datacenter == p1[1] && strings.EqualFold(name, p1[0]) {
					coord1 = &api.CoordinateEntry{Node: e.Node, Coord: e.Coord}
				}
				if dc.Datacenter == p2[1] && strings.EqualFold(name, p2[0]) {
					coord2 = &api.CoordinateEntry{Node: e.Node, Coord: e.Coord}
				}
			}
		}
	} else {
		if len(nodes) < 2 {
			name, err := client.Agent().NodeName()
			if err != nil {
				c.error("Unable to look up agent info: %s", err)
				return 1
			}
			nodes = append(nodes, name)
		}
		entries, _, err := client.Coordinate().Nodes(nil)
		if err != nil {
			c.error("Error getting coordinates: %s", err)
			return 1
		}
		for _, e := range entries {
			if strings.EqualFold(e.Node, nodes[0]) {
				coord1 = e
			}
			if strings.EqualFold(e.Node, nodes[1]) {
				coord2 = e
			}
		}
	}
	if coord1 == nil || coord1.Coord == nil {
		c.error("Could not find a coordinate for node %q", nodes[0])
		return 1
	}
	if coord2 == nil || coord2.Coord == nil {
		c.error("Could not find a coordinate for node %q", nodes[1])
		return 1
	}
	dist := fmt.Sprintf("%.3f ms", coord1.Coord.DistanceTo(coord2.Coord).Seconds()*1000.0)
	c.info("Estimated %s <-> %s rtt: %s (using %s coordinates)", nodes[0], nodes[1], dist, source)
	return 0
}
