package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/consul/api"
)

// `cairn exec` is `consul exec` (Consul's command/exec), the same calls in
// the same order: a session, the job under <prefix>/<session>/job, the
// "_rexec" user event, then blocking reads of <prefix>/<session>/ for
// each agent's ack, output and exit code until -wait passes with nothing
// new. Agents run jobs only with disable_remote_exec = false in their
// config (the default is true, as in Consul).

const execHelp = `
Usage: cairn exec [options] [-|command...]

  Evaluates a command on remote nodes. The nodes responding can be
  filtered using regular expressions on node name, service, and tag
  definitions. If a command is '-', stdin will be read until EOF and used
  as a script input. Agents run it only when their config has
  disable_remote_exec = false (the default is true, as in Consul).
`

type execCmd struct {
	command
	node, service, tag, prefix string
	shell, verbose             bool
	wait, replWait             time.Duration
}

// execSpec is Consul's rExecSpec.
type execSpec struct {
	Command string   `json:",omitempty"`
	Args    []string `json:",omitempty"`
	Script  []byte   `json:",omitempty"`
	Wait    time.Duration
}

func runExec(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &execCmd{command: command{stdin: stdin, stdout: stdout, stderr: stderr}}
	fs := c.flagSet("cairn exec", execHelp, true)
	fs.StringVar(&c.node, "node", "", "Regular expression to filter on node names.")
	fs.StringVar(&c.service, "service", "", "Regular expression to filter on service instances.")
	fs.StringVar(&c.tag, "tag", "", "Regular expression to filter on service tags. Must be used with -service.")
	fs.StringVar(&c.prefix, "prefix", "_rexec", "Prefix in the KV store to use for request data.")
	fs.BoolVar(&c.shell, "shell", true, "Use a shell to run the command.")
	fs.DurationVar(&c.wait, "wait", 2*time.Second, "Period to wait with no responses before terminating execution.")
	fs.DurationVar(&c.replWait, "wait-repl", 200*time.Millisecond, "Period to wait for replication before firing event. This is an optimization to allow stale reads to be performed.")
	fs.BoolVar(&c.verbose, "verbose", false, "Enables verbose output.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	spec := execSpec{Command: strings.Join(fs.Args(), " "), Wait: c.wait}
	if spec.Command == "-" {
		if !c.shell {
			c.error("Cannot configure -shell=false when reading from stdin")
			return 1
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, stdin); err != nil {
			c.error("Failed to read stdin: %v", err)
			return 1
		}
		spec.Command, spec.Script = "", buf.Bytes()
	} else if !c.shell {
		spec.Command, spec.Args = "", fs.Args()
	}
	if spec.Command == "" && len(spec.Script) == 0 && len(spec.Args) == 0 {
		c.error("Must specify a command to execute")
		c.error("")
		fs.Usage()
		return 1
	}
	if err := c.validate(); err != nil {
		c.error("%s", err)
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	if _, err := client.Agent().Self(); err != nil {
		c.error("Error querying cairn agent: %s", err)
		return 1
	}
	body, err := json.Marshal(spec)
	if err != nil {
		c.error("Failed to create job spec: %s", err)
		return 1
	}
	sid, _, err := client.Session().Create(&api.SessionEntry{Name: "Remote Exec", Behavior: api.SessionBehaviorDelete, TTL: "15s"}, nil)
	if err != nil {
		c.error("Failed to create session: %s", err)
		return 1
	}
	defer client.Session().Destroy(sid, nil)
	if c.verbose {
		c.info("Created remote execution session: %s", sid)
	}
	dir := path.Join(c.prefix, sid)
	pair := &api.KVPair{Key: path.Join(dir, "job"), Value: body, Session: sid}
	if ok, _, err := client.KV().Acquire(pair, nil); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("failed to acquire key %s", pair.Key)
		}
		c.error("Failed to create job file: %s", err)
		return 1
	}
	defer client.KV().DeleteTree(dir, nil)
	if c.verbose {
		c.info("Uploaded remote execution spec")
	}
	time.Sleep(c.replWait) // Consul's -wait-repl: a fixed pause so agents can read the job stale
	payload, _ := json.Marshal(map[string]string{"Prefix": c.prefix, "Session": sid})
	id, _, err := client.Event().Fire(&api.UserEvent{Name: "_rexec", Payload: payload, NodeFilter: c.node, ServiceFilter: c.service, TagFilter: c.tag}, nil)
	if err != nil {
		c.error("Failed to fire event: %s", err)
		return 1
	}
	if c.verbose {
		c.info("Fired remote execution event: %s", id)
	}
	code := c.waitForJob(client, sid)
	// Consul's order: the session ends before the data goes, so no agent
	// can write after the delete.
	client.Session().Destroy(sid, nil)
	return code
}

func (c *execCmd) validate() error {
	for _, f := range []struct{ what, re string }{{"node", c.node}, {"service", c.service}, {"tag", c.tag}} {
		if f.re == "" {
			continue
		}
		if _, err := regexp.Compile(f.re); err != nil {
			return fmt.Errorf("Failed to compile %s filter regexp: %v", f.what, err)
		}
	}
	if c.tag != "" && c.service == "" {
		return fmt.Errorf("Cannot provide tag filter without service filter.")
	}
	return nil
}

// execResult is one thing an agent wrote under the job's directory.
type execResult struct {
	node, kind string // kind: ack, heartbeat, output, exit
	output     []byte
	code       int
}

// waitForJob streams the agents' results until c.wait passes with none
// (twice that while some agent acknowledged and has not exited), prints
// them as consul exec does, and returns its exit code: 2 when an agent
// exited non-zero or did not finish.
func (c *execCmd) waitForJob(client *api.Client, sid string) int {
	start := time.Now()
	results := make(chan execResult, 128)
	failed := make(chan struct{}, 1)
	done := make(chan struct{})
	defer close(done)
	go c.streamResults(client, sid, results, failed, done)
	var acks, exits, bad int
	for {
		wait := c.wait
		if acks > exits {
			wait *= 2
		}
		timer := time.NewTimer(wait)
		select {
		case r := <-results:
			timer.Stop()
			switch r.kind {
			case "ack":
				acks++
				if c.verbose {
					c.info("%s", targeted(true, r.node, "acknowledged"))
				}
			case "heartbeat":
				if c.verbose {
					c.info("%s", targeted(true, r.node, "heartbeat received"))
				}
			case "output":
				c.info("%s", targeted(false, r.node, string(r.output)))
			case "exit":
				exits++
				c.info("%s", targeted(true, r.node, fmt.Sprintf("finished with exit code %d", r.code)))
				if r.code != 0 {
					bad++
				}
			}
		case <-timer.C:
			c.info("%d / %d node(s) completed / acknowledged", exits, acks)
			if c.verbose {
				c.info("Completed in %0.2f seconds", time.Since(start).Seconds())
			}
			if acks == 0 {
				c.error("No agent acknowledged the job: agents run remote exec only with disable_remote_exec = false in their config (the default is true, as in Consul).")
			}
			if exits < acks {
				bad++
			}
			if bad > 0 {
				return 2
			}
			return 0
		case <-failed:
			timer.Stop()
			return 1
		}
	}
}

// streamResults is Consul's: blocking key listings of the job's
// directory, each new key read and passed on.
func (c *execCmd) streamResults(client *api.Client, sid string, out chan<- execResult, failed chan<- struct{}, done <-chan struct{}) {
	kv := client.KV()
	dir := path.Join(c.prefix, sid) + "/"
	opts := api.QueryOptions{WaitTime: c.wait}
	seen := map[string]bool{}
	for {
		select {
		case <-done:
			return
		default:
		}
		keys, meta, err := kv.Keys(dir, "", &opts)
		if err != nil {
			c.error("Failed to read results: %s", err)
			failed <- struct{}{}
			return
		}
		if meta.LastIndex == opts.WaitIndex {
			continue
		}
		opts.WaitIndex = meta.LastIndex
		for _, full := range keys {
			if seen[full] {
				continue
			}
			seen[full] = true
			key := strings.TrimPrefix(full, dir)
			var r execResult
			switch {
			case key == "job":
				continue
			case strings.HasSuffix(key, "/ack"):
				r = execResult{node: strings.TrimSuffix(key, "/ack"), kind: "ack"}
			case strings.HasSuffix(key, "/exit"):
				pair, _, err := kv.Get(full, nil)
				if err != nil || pair == nil {
					c.error("Failed to read key '%s': %v", full, err)
					continue
				}
				code, err := strconv.ParseInt(string(pair.Value), 10, 32)
				if err != nil {
					c.error("Failed to parse exit code '%s': %v", pair.Value, err)
					continue
				}
				r = execResult{node: strings.TrimSuffix(key, "/exit"), kind: "exit", code: int(code)}
			case strings.LastIndex(key, "/out/") != -1:
				pair, _, err := kv.Get(full, nil)
				if err != nil || pair == nil {
					c.error("Failed to read key '%s': %v", full, err)
					continue
				}
				r = execResult{node: key[:strings.LastIndex(key, "/out/")], kind: "heartbeat"}
				if len(pair.Value) > 0 {
					r.kind, r.output = "output", pair.Value
				}
			default:
				c.error("Unknown key '%s', ignoring.", key)
				continue
			}
			select {
			case out <- r:
			case <-done:
				return
			}
		}
	}
}

// targeted is Consul's TargetedUI: every line prefixed with "==> node: "
// (arrow) or "    node: ", trailing space trimmed.
func targeted(arrow bool, node, message string) string {
	a := "==>"
	if !arrow {
		a = "   "
	}
	var b strings.Builder
	for _, line := range strings.Split(message, "\n") {
		fmt.Fprintf(&b, "%s %s: %s\n", a, node, line)
	}
	return strings.TrimRightFunc(b.String(), unicode.IsSpace)
}
