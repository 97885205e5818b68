package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
)

// The kv subcommands mirror `consul kv` (command/kv in hashicorp/consul):
// the same flags, arguments, output and error lines, through the official
// client, so scripts written for consul work with cairn.

const kvUsage = `Usage: cairn kv <subcommand> [options] [args]

  Interacts with the key-value store through an agent's HTTP API, as
  "consul kv" does. The agent is -http-addr, or CONSUL_HTTP_ADDR, or
  127.0.0.1:8500.

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store
`

func runKV(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, kvUsage)
		return 1
	}
	c := &kvCmd{command{stdin: stdin, stdout: stdout, stderr: stderr}}
	switch args[0] {
	case "get":
		return c.get(args[1:])
	case "put":
		return c.put(args[1:])
	case "delete":
		return c.del(args[1:])
	case "export":
		return c.export(args[1:])
	case "import":
		return c.imp(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, kvUsage)
		return 0
	}
	fmt.Fprintf(stderr, "cairn kv: unknown subcommand %q\n\n%s", args[0], kvUsage)
	return 1
}

type kvCmd struct {
	command
}

// flags returns a flag set with the HTTP client and server flags every
// kv subcommand takes.
func (c *kvCmd) flags(name, help string) *flag.FlagSet {
	return c.flagSet("cairn kv "+name, help, true)
}

func (c *kvCmd) query() *api.QueryOptions { return &api.QueryOptions{AllowStale: c.stale} }

// keyArg reads the optional single KEY argument; a leading "/" is dropped
// as consul does, since keys never start with one.
func (c *kvCmd) keyArg(fs *flag.FlagSet) (string, bool) {
	args := fs.Args()
	switch len(args) {
	case 0:
		return "", true
	case 1:
		return strings.TrimPrefix(args[0], "/"), true
	}
	c.error("Too many arguments (expected 1, got %d)", len(args))
	return "", false
}

const getHelp = `
Usage: cairn kv get [options] [KEY_OR_PREFIX]

  Retrieves the value at the given key. -detailed shows its metadata,
  -recurse every pair under the prefix, -keys only the key names.
`

func (c *kvCmd) get(args []string) int {
	fs := c.flags("get", getHelp)
	b64 := fs.Bool("base64", false, "Base64 encode the value.")
	detailed := fs.Bool("detailed", false, "Show the key's metadata (indexes, flags, session) as well as its value.")
	keys := fs.Bool("keys", false, "List the keys under the prefix, not their values; see -separator.")
	recurse := fs.Bool("recurse", false, "Show every key-value pair under the prefix.")
	separator := fs.String("separator", "/", "With -keys, list keys only up to the next separator.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	key, ok := c.keyArg(fs)
	if !ok {
		return 1
	}
	if key == "" && !*recurse && !*keys {
		c.error("Error! Missing KEY argument")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	switch {
	case *keys:
		ks, _, err := client.KV().Keys(key, *separator, c.query())
		if err != nil {
			c.error("Error querying cairn agent: %s", err)
			return 1
		}
		for _, k := range ks {
			c.info("%s", k)
		}
	case *recurse:
		pairs, _, err := client.KV().List(key, c.query())
		if err != nil {
			c.error("Error querying cairn agent: %s", err)
			return 1
		}
		for i, p := range pairs {
			if *detailed {
				c.info("%s", detailedPair(p, *b64))
				if i < len(pairs)-1 {
					c.info("")
				}
				continue
			}
			c.info("%s:%s", p.Key, value(p.Value, *b64))
		}
	default:
		p, _, err := client.KV().Get(key, c.query())
		if err != nil {
			c.error("Error querying cairn agent: %s", err)
			return 1
		}
		if p == nil {
			c.error("Error! No key exists at: %s", key)
			return 1
		}
		if *detailed {
			c.info("%s", detailedPair(p, *b64))
			return 0
		}
		c.info("%s", value(p.Value, *b64))
	}
	return 0
}

func value(v []byte, b64 bool) string {
	if b64 {
		return base64.StdEncoding.EncodeToString(v)
	}
	return string(v)
}

// detailedPair is consul's `kv get -detailed` table.
func detailedPair(p *api.KVPair, b64 bool) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 2, 6, ' ', 0)
	fmt.Fprintf(tw, "CreateIndex\t%d\n", p.CreateIndex)
	fmt.Fprintf(tw, "Flags\t%d\n", p.Flags)
	fmt.Fprintf(tw, "Key\t%s\n", p.Key)
	fmt.Fprintf(tw, "LockIndex\t%d\n", p.LockIndex)
	fmt.Fprintf(tw, "ModifyIndex\t%d\n", p.ModifyIndex)
	session := p.Session
	if session == "" {
		session = "-"
	}
	fmt.Fprintf(tw, "Session\t%s\n", session)
	fmt.Fprintf(tw, "Value\t%s", value(p.Value, b64))
	tw.Flush()
	return b.String()
}

const putHelp = `
Usage: cairn kv put [options] KEY [DATA]

  Writes DATA at KEY. DATA may be @file to read a file, or - to read stdin;
  without DATA the key is written with an empty value.

      $ cairn kv put config/redis/maxconns 5
      $ cairn kv put -cas -modify-index=844 config/redis/maxconns 6
`

func (c *kvCmd) put(args []string) int {
	fs := c.flags("put", putHelp)
	cas := fs.Bool("cas", false, "Check-and-set: write only if the key's ModifyIndex is still -modify-index.")
	flags := fs.Uint64("flags", 0, "Unsigned integer stored with the pair, for the application's use.")
	b64 := fs.Bool("base64", false, "DATA is base64 encoded.")
	modifyIndex := fs.Uint64("modify-index", 0, "The ModifyIndex the key must still have, with -cas.")
	session := fs.String("session", "", "Session ID, for -acquire and -release.")
	acquire := fs.Bool("acquire", false, "Take the lock on the key for -session (creating the key if needed).")
	release := fs.Bool("release", false, "Release -session's lock on the key.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	key, data, err := c.putData(fs.Args())
	if err != nil {
		c.error("Error! %s", err)
		return 1
	}
	raw := []byte(data)
	if *b64 {
		if raw, err = base64.StdEncoding.DecodeString(data); err != nil {
			c.error("Error! Cannot base 64 decode data: %s", err)
			return 1
		}
	}
	if (*release || *acquire) && *session == "" {
		c.error("Error! Missing -session (required with -acquire and -release)")
		return 1
	}
	if *cas && *modifyIndex == 0 {
		c.error("Must specify -modify-index with -cas!")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	pair := &api.KVPair{Key: key, ModifyIndex: *modifyIndex, Flags: *flags, Value: raw, Session: *session}
	switch {
	case *cas:
		ok, _, err := client.KV().CAS(pair, nil)
		if err != nil {
			c.error("Error! Did not write to %s: %s", key, err)
			return 1
		}
		if !ok {
			c.error("Error! Did not write to %s: CAS failed", key)
			return 1
		}
		c.info("Success! Data written to: %s", key)
	case *acquire:
		ok, _, err := client.KV().Acquire(pair, nil)
		if err != nil {
			c.error("Error! Failed writing data: %s", err)
			return 1
		}
		if !ok {
			c.error("Error! Did not acquire lock")
			return 1
		}
		c.info("Success! Lock acquired on: %s", key)
	case *release:
		ok, _, err := client.KV().Release(pair, nil)
		if err != nil {
			c.error("Error! Failed writing data: %s", err)
			return 1
		}
		if !ok {
			c.error("Error! Did not release lock")
			return 1
		}
		c.info("Success! Lock released on: %s", key)
	default:
		if _, err := client.KV().Put(pair, nil); err != nil {
			c.error("Error! Failed writing data: %s", err)
			return 1
		}
		c.info("Success! Data written to: %s", key)
	}
	return 0
}

// putData reads KEY [DATA]; DATA is literal, @file, or - for stdin.
func (c *kvCmd) putData(args []string) (key, data string, err error) {
	switch len(args) {
	case 0:
		return "", "", fmt.Errorf("Missing KEY argument")
	case 1:
		return args[0], "", nil
	case 2:
	default:
		return "", "", fmt.Errorf("Too many arguments (expected 1 or 2, got %d)", len(args))
	}
	data, err = c.readData(args[1])
	return args[0], data, err
}

// readData resolves consul's DATA forms: @file, - (stdin), or literal.
func (c *kvCmd) readData(arg string) (string, error) {
	switch {
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return "", fmt.Errorf("Failed to read file: %s", err)
		}
		return string(b), nil
	case arg == "-":
		b, err := io.ReadAll(c.stdin)
		if err != nil {
			return "", fmt.Errorf("Failed to read stdin: %s", err)
		}
		return string(b), nil
	}
	return arg, nil
}

const deleteHelp = `
Usage: cairn kv delete [options] KEY_OR_PREFIX

  Removes the value at KEY (nothing happens when there is none). -recurse
  removes every key that starts with the prefix.
`

func (c *kvCmd) del(args []string) int {
	fs := c.flags("delete", deleteHelp)
	cas := fs.Bool("cas", false, "Check-and-set: delete only if the key's ModifyIndex is still -modify-index.")
	modifyIndex := fs.Uint64("modify-index", 0, "The ModifyIndex the key must still have, with -cas.")
	recurse := fs.Bool("recurse", false, "Delete every key with the prefix.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	key, ok := c.keyArg(fs)
	if !ok {
		return 1
	}
	switch {
	case key == "" && !*recurse:
		c.error("Error! Missing KEY argument")
		return 1
	case *cas && *modifyIndex == 0:
		c.error("Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.")
		return 1
	case *modifyIndex != 0 && !*cas:
		c.error("Cannot specify -modify-index without -cas!")
		return 1
	case *recurse && *cas:
		c.error("Cannot specify both -cas and -recurse!")
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	switch {
	case *recurse:
		if _, err := client.KV().DeleteTree(key, nil); err != nil {
			c.error("Error! Did not delete prefix %s: %s", key, err)
			return 1
		}
		c.info("Success! Deleted keys with prefix: %s", key)
	case *cas:
		ok, _, err := client.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: *modifyIndex}, nil)
		if err != nil {
			c.error("Error! Did not delete key %s: %s", key, err)
			return 1
		}
		if !ok {
			c.error("Error! Did not delete key %s: CAS failed", key)
			return 1
		}
		c.info("Success! Deleted key: %s", key)
	default:
		if _, err := client.KV().Delete(key, nil); err != nil {
			c.error("Error deleting key %s: %s", key, err)
			return 1
		}
		c.info("Success! Deleted key: %s", key)
	}
	return 0
}

// exportEntry is one element of `consul kv export`'s JSON array.
type exportEntry struct {
	Key       string `json:"key"`
	Flags     uint64 `json:"flags"`
	Value     string `json:"value"` // base64
	Namespace string `json:"namespace,omitempty"`
	Partition string `json:"partition,omitempty"`
}

const exportHelp = `
Usage: cairn kv export [KEY_OR_PREFIX]

  Writes the pairs under the prefix to stdout as the JSON array that
  "consul kv export" writes, for "cairn kv import" or "consul kv import".
`

func (c *kvCmd) export(args []string) int {
	fs := c.flags("export", exportHelp)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	key, ok := c.keyArg(fs)
	if !ok {
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	pairs, _, err := client.KV().List(key, c.query())
	if err != nil {
		c.error("Error querying cairn agent: %s", err)
		return 1
	}
	out := make([]exportEntry, len(pairs))
	for i, p := range pairs {
		out[i] = exportEntry{
			Key:       p.Key,
			Flags:     p.Flags,
			Value:     base64.StdEncoding.EncodeToString(p.Value),
			Namespace: p.Namespace,
			Partition: p.Partition,
		}
	}
	b, err := json.MarshalIndent(out, "", "\t")
	if err != nil {
		c.error("Error exporting KV data: %s", err)
		return 1
	}
	c.info("%s", b)
	return 0
}

const importHelp = `
Usage: cairn kv import [DATA]

  Writes the pairs of a "kv export" JSON array. DATA is @file, - for
  stdin, or the JSON itself.
`

func (c *kvCmd) imp(args []string) int {
	fs := c.flags("import", importHelp)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	var data string
	switch args := fs.Args(); len(args) {
	case 0:
		c.error("Error! Missing DATA argument")
		return 1
	case 1:
		if args[0] == "" {
			c.error("Error! Empty DATA argument")
			return 1
		}
		var err error
		if data, err = c.readData(args[0]); err != nil {
			c.error("Error! %s", err)
			return 1
		}
	default:
		c.error("Error! Too many arguments (expected 1, got %d)", len(args))
		return 1
	}
	var entries []exportEntry
	if err := json.Unmarshal([]byte(data), &entries); err != nil {
		c.error("Cannot unmarshal data: %s", err)
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	for _, e := range entries {
		v, err := base64.StdEncoding.DecodeString(e.Value)
		if err != nil {
			c.error("Error base 64 decoding value for key %s: %s", e.Key, err)
			return 1
		}
		pair := &api.KVPair{Key: e.Key, Flags: e.Flags, Value: v}
		if _, err := client.KV().Put(pair, &api.WriteOptions{Namespace: e.Namespace, Partition: e.Partition}); err != nil {
			c.error("Error! Failed writing data for key %s: %s", e.Key, err)
			return 1
		}
		c.info("Imported: %s", e.Key)
	}
	return 0
}
