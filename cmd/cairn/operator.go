package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// `cairn operator raft list-peers` is consul's (command/operator/raft/
// listpeers in hashicorp/consul) before it grew the commit index columns:
// cairn's API does not report each server's last index.

const operatorUsage = `Usage: cairn operator <subcommand> [options]

  Cluster-level tools for operators, as "consul operator".

Subcommands:
    raft    Shows the Raft configuration
`

const raftUsage = `Usage: cairn operator raft <subcommand> [options]

Subcommands:
    list-peers    Displays the current Raft peer configuration
`

const listPeersHelp = `
Usage: cairn operator raft list-peers [options]

  Displays the current Raft peer configuration: each server, whether it
  leads, and whether it votes.
`

func runOperator(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, operatorUsage)
		return 1
	case isHelp(args[0]):
		fmt.Fprint(stdout, operatorUsage)
		return 0
	case args[0] != "raft":
		fmt.Fprintf(stderr, "cairn operator: unknown subcommand %q\n\n%s", args[0], operatorUsage)
		return 1
	}
	args = args[1:]
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, raftUsage)
		return 1
	case isHelp(args[0]):
		fmt.Fprint(stdout, raftUsage)
		return 0
	case args[0] != "list-peers":
		fmt.Fprintf(stderr, "cairn operator raft: unknown subcommand %q\n\n%s", args[0], raftUsage)
		return 1
	}
	return runListPeers(args[1:], stdout, stderr)
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func runListPeers(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn operator raft list-peers", listPeersHelp, true)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	cfg, err := client.Operator().RaftGetConfiguration(&api.QueryOptions{AllowStale: c.stale})
	if err != nil {
		c.error("Error getting peers: Failed to retrieve raft configuration: %v", err)
		return 1
	}
	fmt.Fprint(stdout, peersTable(cfg))
	return 0
}

// peersTable is list-peers' table, servers in the configuration's order.
func peersTable(cfg *api.RaftConfiguration) string {
	rows := [][]string{{"Node", "ID", "Address", "State", "Voter", "RaftProtocol"}}
	for _, s := range cfg.Servers {
		state := "follower"
		if s.Leader {
			state = "leader"
		}
		protocol := s.ProtocolVersion
		if protocol == "" {
			protocol = "<=1" // consul's words: servers before the version was reported
		}
		rows = append(rows, []string{s.Node, s.ID, s.Address, state, strconv.FormatBool(s.Voter), protocol})
	}
	return table(rows)
}
