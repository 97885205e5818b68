package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/snapshot"
	"github.com/cairn-dev/cairn/kv"
)

// `cairn snapshot save|restore|inspect` is `consul snapshot` (command/
// snapshot in hashicorp/consul): save streams GET /v1/snapshot into a
// file (written beside it and renamed, so a failed save never leaves a
// half file under the name), restore PUTs one, inspect reads one offline.

const snapshotUsage = `Usage: cairn snapshot <subcommand> [options]

  Saves, restores and inspects snapshots of the replicated state (KV,
  sessions, the VIP table), as "consul snapshot".

Subcommands:
    inspect    Displays information about a snapshot file
    restore    Restores a snapshot file into the cluster
    save       Saves a snapshot of the cluster to a file
`

func runSnapshot(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, snapshotUsage)
		return 1
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(args[1:], stdout, stderr)
	case "restore":
		return runSnapshotRestore(args[1:], stdout, stderr)
	case "inspect":
		return runSnapshotInspect(args[1:], stdout, stderr)
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, snapshotUsage)
		return 0
	}
	fmt.Fprintf(stderr, "cairn snapshot: unknown subcommand %q\n\n%s", args[0], snapshotUsage)
	return 1
}

// oneFile parses the flags and the single file argument.
func (c *command) oneFile(args []string, name, help string, server bool) (string, bool, int) {
	fs := c.flagSet(name, help, server)
	if err := fs.Parse(args); err != nil {
		return "", false, flagExit(err)
	}
	if fs.NArg() != 1 {
		c.error("This command takes one argument: <file>")
		fs.Usage()
		return "", false, 1
	}
	return fs.Arg(0), true, 0
}

const snapshotSaveHelp = `
Usage: cairn snapshot save [options] FILE

  Saves an atomic, point-in-time snapshot of the state of the servers:
  keys, sessions, prepared queries, the VIP table and ACLs. Any agent
  takes it and asks the leader.
`

func runSnapshotSave(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	file, ok, code := c.oneFile(args, "cairn snapshot save", snapshotSaveHelp, true)
	if !ok {
		return code
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	snap, qm, err := client.Snapshot().Save(&api.QueryOptions{AllowStale: c.stale})
	if err != nil {
		c.error("Error saving snapshot: %s", err)
		return 1
	}
	defer snap.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".tmp-")
	if err != nil {
		c.error("Error creating snapshot file: %s", err)
		return 1
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, snap); err != nil {
		tmp.Close()
		c.error("Error writing snapshot file: %s", err)
		return 1
	}
	if err := tmp.Close(); err != nil {
		c.error("Error writing snapshot file: %s", err)
		return 1
	}
	// Verify before keeping it: a cut stream must not pass for a backup.
	if _, err := inspectFile(tmp.Name()); err != nil {
		c.error("Error verifying snapshot file: %s", err)
		return 1
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		c.error("Error writing snapshot file: %s", err)
		return 1
	}
	c.info("Saved and verified snapshot to index %d", qm.LastIndex)
	return 0
}

const snapshotRestoreHelp = `
Usage: cairn snapshot restore [options] FILE

  Restores a snapshot into the cluster, replacing its keys, sessions and
  VIP table. The file is checked before anything changes.
`

func runSnapshotRestore(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	file, ok, code := c.oneFile(args, "cairn snapshot restore", snapshotRestoreHelp, false)
	if !ok {
		return code
	}
	f, err := os.Open(file)
	if err != nil {
		c.error("Error opening snapshot file: %s", err)
		return 1
	}
	defer f.Close()
	client, ok := c.client()
	if !ok {
		return 1
	}
	if err := client.Snapshot().Restore(nil, f); err != nil {
		c.error("Error restoring snapshot: %s", err)
		return 1
	}
	c.info("Restored snapshot")
	return 0
}

const snapshotInspectHelp = `
Usage: cairn snapshot inspect FILE

  Displays a snapshot file's ID, index, term and size, and what its state
  holds, after checking every file of the archive against its sum.
`

func runSnapshotInspect(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.bareFlagSet("cairn snapshot inspect", snapshotInspectHelp)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		c.error("This command takes one argument: <file>")
		return 1
	}
	out, err := inspectFile(fs.Arg(0))
	if err != nil {
		c.error("Error inspecting snapshot: %s", err)
		return 1
	}
	fmt.Fprint(stdout, out)
	return 0
}

// inspectFile verifies a snapshot file and describes it.
func inspectFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	a, err := snapshot.Read(f)
	if err != nil {
		return "", err
	}
	defer a.Close()
	st, err := a.State()
	if err != nil {
		return "", err
	}
	sum, err := kv.SummarizeState(st)
	if err != nil {
		return "", err
	}
	return inspectTable(a.Meta, sum), nil
}

// inspectTable is consul snapshot inspect's table, then the contents.
func inspectTable(m snapshot.Meta, s kv.StateSummary) string {
	rows := [][]string{
		{"ID", m.ID},
		{"Size", fmt.Sprint(m.Size)},
		{"Index", fmt.Sprint(m.Index)},
		{"Term", fmt.Sprint(m.Term)},
		{"Version", m.Version},
	}
	out := table(rows) + "\n"
	contents := [][]string{{"Type", "Count"}, {"KV entries", fmt.Sprint(s.Keys)}, {"Sessions", fmt.Sprint(s.Sessions)}, {"Tombstones", fmt.Sprint(s.Tombstones)}}
	for _, p := range s.SortedPrefixes() {
		contents = append(contents, []string{"  keys under " + p, fmt.Sprint(s.Prefixes[p])})
	}
	return out + table(contents)
}
