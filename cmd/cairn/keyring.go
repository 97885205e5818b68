package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/hashicorp/consul/api"
)

// `cairn keyring` is `consul keyring` (command/keyring in
// hashicorp/consul): it rotates the gossip encryption keys (-encrypt) of
// every live member through /v1/operator/keyring. Exactly one of
// -install, -use, -remove, -list or -list-primary.

const keyringHelp = `
Usage: cairn keyring [options]

  Manages the gossip encryption keys of the cluster (-encrypt). Keys are
  installed on, made primary on, or removed from every live member at
  once, and kept in each agent's data dir (serf/local.keyring) so that a
  restart keeps them. To rotate: -install NEW, -use NEW, -remove OLD.
  Only one operation may be given at a time.
`

func runKeyring(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn keyring", keyringHelp, false)
	install := fs.String("install", "", "Install a new encryption key. This will broadcast the new key to all members in the cluster.")
	use := fs.String("use", "", "Change the primary encryption key, which is used to encrypt messages. The key must already be installed before this operation can succeed.")
	remove := fs.String("remove", "", "Remove the given key from the cluster. This operation may only be performed on keys which are not currently the primary key.")
	list := fs.Bool("list", false, "List all keys currently in use within the cluster.")
	listPrimary := fs.Bool("list-primary", false, "List all primary keys currently in use within the cluster.")
	fs.Int("relay-factor", 0, "Accepted for compatibility with consul keyring; cairn asks every member directly.")
	fs.Bool("local-only", false, "Accepted for compatibility with consul keyring.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	n := 0
	for _, set := range []bool{*install != "", *use != "", *remove != "", *list, *listPrimary} {
		if set {
			n++
		}
	}
	if n != 1 {
		c.error("Exactly one operation must be given: -install, -use, -remove, -list or -list-primary")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	op := client.Operator()
	var err error
	switch {
	case *list, *listPrimary:
		fmt.Fprintln(stdout, "==> Gathering installed encryption keys...")
		var rs []*api.KeyringResponse
		if rs, err = op.KeyringList(nil); err == nil {
			for _, r := range rs {
				keys := r.Keys
				if *listPrimary {
					keys = r.PrimaryKeys
				}
				printKeyring(stdout, r, keys)
			}
			return 0
		}
	case *install != "":
		fmt.Fprintln(stdout, "==> Installing new gossip encryption key...")
		err = op.KeyringInstall(*install, nil)
	case *use != "":
		fmt.Fprintln(stdout, "==> Changing primary gossip encryption key...")
		err = op.KeyringUse(*use, nil)
	case *remove != "":
		fmt.Fprintln(stdout, "==> Removing gossip encryption key...")
		err = op.KeyringRemove(*remove, nil)
	}
	if err != nil {
		c.error("error: %s", err)
		return 1
	}
	return 0
}

// printKeyring prints one pool's keys as consul keyring does:
// "  <key> [<nodes holding it>/<nodes>]".
func printKeyring(w io.Writer, r *api.KeyringResponse, keys map[string]int) {
	pool := "LAN"
	if r.WAN {
		pool = "WAN"
	}
	fmt.Fprintf(w, "\n%s (%s):\n", r.Datacenter, pool)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %s [%d/%d]\n", k, keys[k], r.NumNodes)
	}
	for node, msg := range r.Messages {
		fmt.Fprintf(w, "  %s: %s\n", node, msg)
	}
}
