package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `Usage: cairn <command> [args]

Commands:
    agent          Runs a cairn agent (Consul's flags; try "cairn agent -dev")
    completion     Prints a shell completion script (bash or zsh)
    event          Fires a user event across the cluster
    exec           Executes a command on cluster nodes (agents with disable_remote_exec = false)
    force-leave    Forces a member of the cluster to enter the "left" state
    join           Tells a running agent to join the cluster
    keygen         Generates a new gossip encryption key
    keyring        Manages the gossip encryption keys (install, use, remove, list)
    acl            Manages ACL tokens, policies and roles (like "consul acl")
    kv             Interacts with the key-value store (like "consul kv")
    leave          Gracefully leaves the cluster and shuts the agent down
    maint          Controls node or service maintenance mode
    members        Lists the members of the cluster
    debug          Captures the agent's state for a bug report
    info           Shows the agent's state (stats) for debugging
    monitor        Streams the agent's log
    operator       Cluster-level tools for operators ("operator raft list-peers")
    reload         Makes the agent re-read its configuration
    rtt            Estimates network round trip time between nodes
    snapshot       Saves, restores and inspects snapshots of the replicated state
    template       Renders consul-template templates and keeps them current
    tls            Creates a CA and agent certificates (like "consul tls")
    validate       Checks config files and directories (like "consul validate")
    version        Prints the cairn version (-json for JSON)

Run "cairn <command> -h" for a command's flags.
`

// run executes one cairn command and returns the process exit code.
// Errors go to stderr, in the form the matching consul command uses.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	switch args[0] {
	case "agent":
		return runAgent(args[1:], stderr)
	case "kv":
		return runKV(args[1:], stdin, stdout, stderr)
	case "acl":
		return runACL(args[1:], stdin, stdout, stderr)
	case "members":
		return runMembers(args[1:], stdout, stderr)
	case "join":
		return runJoin(args[1:], stdout, stderr)
	case "leave":
		return runLeave(args[1:], stdout, stderr)
	case "event":
		return runEvent(args[1:], stdout, stderr)
	case "maint":
		return runMaint(args[1:], stdout, stderr)
	case "rtt":
		return runRTT(args[1:], stdout, stderr)
	case "exec":
		return runExec(args[1:], stdin, stdout, stderr)
	case "force-leave":
		return runForceLeave(args[1:], stdout, stderr)
	case "operator":
		return runOperator(args[1:], stdout, stderr)
	case "snapshot":
		return runSnapshot(args[1:], stdout, stderr)
	case "reload":
		return runReload(args[1:], stdout, stderr)
	case "monitor":
		return runMonitor(args[1:], stdout, stderr)
	case "info":
		return runInfo(args[1:], stdout, stderr)
	case "debug":
		return runDebug(args[1:], stdout, stderr)
	case "template":
		return runTemplate(args[1:], stdout, stderr)
	case "tls":
		return runTLS(args[1:], stdout, stderr)
	case "keygen":
		return runKeygen(args[1:], stdout, stderr)
	case "keyring":
		return runKeyring(args[1:], stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "completion":
		return runCompletion(args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout, stderr)
	case "-version", "--version", "-v":
		return runVersion(nil, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "cairn: unknown command %q\n\n%s", args[0], usage)
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, `flags go after the command, as in "cairn agent -dev"`)
	}
	return 1
}
