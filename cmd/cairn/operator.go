package main

import (
	"cmp"
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
    raft    Shows and changes the Raft configuration
`

const raftUsage = `Usage: cairn operator raft <subcommand> [options]

Subcommands:
    list-peers         Displays the current Raft peer configuration
    remove-peer        Removes a server from the Raft configuration
    transfer-leader    Hands Raft leadership to another server
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
	case args[0] == "remove-peer":
		return runRemovePeer(args[1:], stdout, stderr)
	case args[0] == "transfer-leader":
		return runTransferLeader(args[1:], stdout, stderr)
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
	client, code := c.connect(fs, args)
	if client == nil {
		return code
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

const removePeerHelp = `
Usage: cairn operator raft remove-peer [options] (-id ID | -address IP:PORT)

  Removes a server from the Raft configuration: for a server that failed
  for good and will not come back. Any agent takes it and passes it on
  to the leader.
`

func runRemovePeer(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn operator raft remove-peer", removePeerHelp, false)
	id := fs.String("id", "", "Raft ID of the server to remove (list-peers shows it).")
	address := fs.String("address", "", "Raft address (IP:port) of the server to remove.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	if (*id == "") == (*address == "") {
		c.error("Error removing peer: give exactly one of -id and -address")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	var err error
	if *id != "" {
		err = client.Operator().RaftRemovePeerByID(*id, nil)
	} else {
		err = client.Operator().RaftRemovePeerByAddress(*address, nil)
	}
	if err != nil {
		c.error("Error removing peer: %v", err)
		return 1
	}
	c.info("Removed peer with %s", cmp.Or(*id, *address))
	return 0
}

const transferLeaderHelp = `
Usage: cairn operator raft transfer-leader [options] [-id ID]

  Hands Raft leadership to the server with -id, or to the most
  up-to-date follower. Any agent takes it and passes it on to the leader.
`

func runTransferLeader(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn operator raft transfer-leader", transferLeaderHelp, false)
	id := fs.String("id", "", "Raft ID of the server to hand leadership to; empty: the most up-to-date follower.")
	client, code := c.connect(fs, args)
	if client == nil {
		return code
	}
	resp, err := client.Operator().RaftLeaderTransfer(*id, nil)
	if err != nil {
		c.error("Error transferring leadership: %v", err)
		return 1
	}
	if !resp.Success {
		c.error("Error transferring leadership: the leader did not confirm it")
		return 1
	}
	c.info("Success")
	return 0
}
