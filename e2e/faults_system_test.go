//go:build system && linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/consul/api"
)

// The fault-injection suite: three servers and a client agent, each in a
// network namespace of its own on one bridge (10.98.0.0/24), as hosts
// on a LAN. Rounds of faults hit the leader: kill -9 and a restart,
// SIGSTOP for a few seconds and SIGCONT, and a partition (its link to
// the bridge down, then up). Clients meanwhile run consistent and
// default reads, puts, check-and-sets and lock acquire/release, and
// porcupine checks the whole history. Every write that failed is then
// classified by reading it back: an error that says nothing was written
// must be true, and nothing acknowledged may be missing.

const faultRounds = 21 // 7 of each kind

type faultNode struct {
	name    string
	ip      string
	server  bool
	ns      netNS
	link    string // its port on the bridge, in the lan namespace
	dataDir string
	proc    *proc
	api     *api.Client
	starts  int
}

func (n *faultNode) httpAddr() string   { return n.ip + ":8500" }
func (n *faultNode) serverAddr() string { return n.ip + ":8300" }

type faultCluster struct {
	t       *testing.T
	lan     netNS
	servers []*faultNode
	client  *faultNode
}

func newFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	needNetNS(t)
	c := &faultCluster{t: t}
	c.lan = newNS(t, "flan")
	c.lan.ip(t, "link add br0 type bridge")
	c.lan.ip(t, "link set br0 up")
	base := t.TempDir()
	mk := func(i int, name string, server bool) *faultNode {
		n := &faultNode{name: name, ip: fmt.Sprintf("10.98.0.%d", 10+i), server: server, link: fmt.Sprintf("f%d", i), dataDir: base + "/" + name}
		n.ns = newNS(t, name)
		link(t, c.lan, n.link, "", n.ns, "eth0", n.ip+"/24")
		c.lan.ip(t, "link set "+n.link+" master br0")
		hc := n.ns.httpClient()
		hc.Timeout = 10 * time.Second
		cl, err := api.NewClient(&api.Config{Address: n.httpAddr(), HttpClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		n.api = cl
		return n
	}
	for i := range 3 {
		c.servers = append(c.servers, mk(i, fmt.Sprintf("s%d", i), true))
	}
	c.client = mk(3, "c0", false)
	for _, n := range c.all() {
		c.start(n)
	}
	for _, n := range c.all() {
		c.waitReady(n)
	}
	return c
}

func (c *faultCluster) all() []*faultNode {
	return append(append([]*faultNode{}, c.servers...), c.client)
}

func (c *faultCluster) start(n *faultNode) {
	c.t.Helper()
	args := []string{"agent", "-node", n.name, "-data-dir", n.dataDir, "-bind", n.ip, "-client", n.ip,
		"-http-port", "8500", "-dns-port", "-1", "-serf-lan-port", "8301", "-server-port", "8300"}
	if n.server {
		args = append(args, "-server", "-bootstrap-expect", "3")
	}
	for _, s := range c.servers {
		if s != n {
			args = append(args, "-retry-join", s.ip+":8301")
		}
	}
	n.starts++
	n.proc = startCommand(c.t, fmt.Sprintf("%s (start %d)", n.name, n.starts), n.ns.command(cairnBin, args...))
}

func (c *faultCluster) waitReady(n *faultNode) {
	c.t.Helper()
	eventually(c.t, n.name+" ready (a leader and a consistent read)", 30*time.Second, func() (bool, string) {
		if n.proc.exited() {
			c.t.Fatalf("%s exited: %s", n.name, n.proc.out.String())
		}
		l, err := n.api.Status().Leader()
		if err != nil || l == "" {
			return false, fmt.Sprintf("leader %q %v", l, errText(err))
		}
		_, _, err = n.api.KV().Get("faults-ready", &api.QueryOptions{RequireConsistent: true})
		return err == nil, errText(err)
	})
}

// leader is the server that leads, as the others agree.
func (c *faultCluster) leader(except *faultNode) *faultNode {
	c.t.Helper()
	var leader *faultNode
	eventually(c.t, "a leader", 30*time.Second, func() (bool, string) {
		var seen []string
		for _, s := range c.servers {
			if s == except {
				continue
			}
			addr, err := s.api.Status().Leader()
			seen = append(seen, fmt.Sprintf("%s: %q %s", s.name, addr, errText(err)))
			for _, l := range c.servers {
				if l != except && addr == l.serverAddr() {
					leader = l
					return true, ""
				}
			}
		}
		return false, strings.Join(seen, "; ")
	})
	return leader
}

// faultIn is one operation of the history. Values are unique, so a value
// names the write that made it.
type faultIn struct {
	op    string // get, put, cas, acquire, release
	key   string
	value string // put, cas: the value written; acquire, release: the holder
	from  string // cas: the value expected ("" is no key)
	mode  string // get: "consistent" or "default"
}

type faultOut struct {
	value   string // get
	ok      bool   // cas, acquire, release
	unknown bool   // the outcome is not known: it may or may not have happened
}

// faultModel is a register per key; for lock keys the register holds the
// session that holds the lock ("" when free).
var faultModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(faultIn).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		cur, in, out := state.(string), input.(faultIn), output.(faultOut)
		var applies bool
		next := cur
		switch in.op {
		case "get":
			return out.value == cur, cur
		case "put":
			applies, next = true, in.value
		case "cas":
			applies, next = cur == in.from, in.value
		case "acquire":
			applies, next = cur == "" || cur == in.value, in.value
		case "release":
			applies, next = cur == in.value, ""
		}
		if out.unknown {
			if applies {
				return true, next
			}
			return true, cur
		}
		if in.op == "put" {
			return true, next
		}
		if applies {
			return out.ok, next
		}
		return !out.ok, cur
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(faultIn), output.(faultOut)
		res := fmt.Sprint(out.ok)
		if out.unknown {
			res = "?"
		}
		switch in.op {
		case "get":
			return fmt.Sprintf("get[%s](%s) -> %q", in.mode, in.key, out.value)
		case "put":
			return fmt.Sprintf("put(%s, %q) -> %s", in.key, in.value, res)
		case "cas":
			return fmt.Sprintf("cas(%s, %q -> %q) -> %s", in.key, in.from, in.value, res)
		}
		return fmt.Sprintf("%s(%s, %s) -> %s", in.op, in.key, in.value, res)
	},
}

// faultHistory records operations, and the writes whose outcome came
// back as an error, by what the error said.
type faultHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	open  []int // unanswered operations, returned at the end

	// Writes to keys of their own (faults/log/...), by outcome.
	acked, refused, unknown []string
	outcomes                map[string]int
}

func (h *faultHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *faultHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.Output.(faultOut).unknown {
		h.open = append(h.open, len(h.ops))
	}
	h.ops = append(h.ops, op)
}

func (h *faultHistory) count(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outcomes[what]++
}

// classify says what a failed write's error tells the caller: "unknown"
// (the agent said it may have been applied, or no answer came back),
// "refused" (an answer that says nothing was written), or "unsent" (no
// connection: the agent is down).
func classify(err error) string {
	msg := err.Error()
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return "unsent"
	case strings.Contains(msg, "the write may have been applied"):
		return "unknown"
	case strings.Contains(msg, "Unexpected response code"):
		return "refused"
	}
	return "unknown" // a timeout or a broken connection: the client cannot tell
}

func runFaultClient(ctx context.Context, id int, n *faultNode, session string, h *faultHistory) {
	type seen struct {
		value string
		index uint64
	}
	last := map[string]seen{}
	holder := fmt.Sprintf("c%d", id)
	regs := []string{"faults/r/a", "faults/r/b", "faults/r/c"}
	lockKey := fmt.Sprintf("faults/lock/%d", id%2)
	for seq := 0; ctx.Err() == nil; seq++ {
		key := regs[rand.IntN(len(regs))]
		value := fmt.Sprintf("c%d-%d", id, seq)
		in := faultIn{op: "get", key: key, mode: "consistent"}
		r := rand.Float64()
		switch {
		case r < 0.2:
		case r < 0.35:
			in.mode = "default"
		case r < 0.55:
			in = faultIn{op: "put", key: key, value: value}
		case r < 0.7 && last[key].index > 0:
			in = faultIn{op: "cas", key: key, value: value, from: last[key].value}
		case r < 0.8 && session != "":
			in = faultIn{op: "acquire", key: lockKey, value: holder}
		case r < 0.9 && session != "":
			in = faultIn{op: "release", key: lockKey, value: holder}
		default:
			in = faultIn{op: "log", key: fmt.Sprintf("faults/log/%s", value), value: value}
		}
		call := h.now()
		var (
			out faultOut
			err error
		)
		wo := (&api.WriteOptions{}).WithContext(ctx)
		switch in.op {
		case "get":
			q := &api.QueryOptions{RequireConsistent: in.mode == "consistent"}
			var p *api.KVPair
			p, _, err = n.api.KV().Get(key, q.WithContext(ctx))
			if err == nil {
				s := seen{}
				if p != nil {
					s = seen{string(p.Value), p.ModifyIndex}
				}
				last[key], out.value = s, s.value
			}
		case "put", "log":
			_, err = n.api.KV().Put(&api.KVPair{Key: in.key, Value: []byte(value)}, wo)
		case "cas":
			out.ok, _, err = n.api.KV().CAS(&api.KVPair{Key: key, Value: []byte(value), ModifyIndex: last[key].index}, wo)
		case "acquire":
			out.ok, _, err = n.api.KV().Acquire(&api.KVPair{Key: in.key, Value: []byte(value), Session: session}, wo)
		case "release":
			out.ok, _, err = n.api.KV().Release(&api.KVPair{Key: in.key, Value: []byte(value), Session: session}, wo)
		}
		ret := h.now()
		if ctx.Err() != nil && err != nil {
			if in.op != "get" && in.op != "log" {
				h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: faultOut{unknown: true}})
			}
			return
		}
		if in.op == "log" {
			h.mu.Lock()
			switch {
			case err == nil:
				h.acked = append(h.acked, in.key)
			case classify(err) == "unknown":
				h.unknown = append(h.unknown, in.key)
			default:
				h.refused = append(h.refused, in.key)
			}
			h.mu.Unlock()
		}
		switch {
		case err == nil:
			h.count(in.op + " ok")
			if in.op != "log" {
				h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
			}
			continue
		case in.op == "get":
			h.count("get failed")
		case in.op == "log":
			h.count("log " + classify(err))
		default:
			how := classify(err)
			h.count(in.op + " " + how)
			if how == "unknown" {
				h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: faultOut{unknown: true}})
			}
			// A refused or unsent write is left out: it must not have
			// happened, and the checker finds any read of its value
			// (values are unique) illegal.
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestSystemFaultInjection runs the rounds and checks the history.
func TestSystemFaultInjection(t *testing.T) {
	c := newFaultCluster(t)
	h := &faultHistory{start: time.Now(), outcomes: map[string]int{}}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var workers sync.WaitGroup
	id := 0
	for _, n := range c.all() {
		clients := 1
		if n == c.client {
			clients = 4
		}
		for range clients {
			session := ""
			if n == c.client {
				// Sessions of the client agent's node, which no fault
				// touches, so no lock is released behind the model.
				s, _, err := n.api.Session().Create(&api.SessionEntry{LockDelay: time.Millisecond}, nil)
				if err != nil {
					t.Fatal(err)
				}
				session = s
			}
			workers.Go(func(id int) func() {
				return func() { runFaultClient(ctx, id, n, session, h) }
			}(id))
			id++
		}
	}

	var faults []porcupine.Annotation
	note := func(desc string) {
		t.Logf("%v: %s", time.Duration(h.now()).Round(time.Millisecond), desc)
		faults = append(faults, porcupine.Annotation{Tag: "faults", Start: h.now(), Description: desc})
	}
	settle := func() {
		// Let the clients work between faults.
		t0 := h.now()
		eventually(t, "clients making progress", 30*time.Second, func() (bool, string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			n := 0
			for _, op := range h.ops {
				if op.Call > t0 && !op.Output.(faultOut).unknown {
					n++
				}
			}
			return n >= 60, fmt.Sprintf("%d answers since the last fault", n)
		})
	}
	settle()
	for round := range faultRounds {
		leader := c.leader(nil)
		switch round % 3 {
		case 0:
			leader.proc.signal(syscall.SIGKILL)
			leader.proc.wait(10 * time.Second)
			note(fmt.Sprintf("round %d: kill -9 leader %s", round+1, leader.name))
			note("new leader " + c.leader(leader).name)
			c.start(leader)
			c.waitReady(leader)
			note("restarted " + leader.name)
		case 1:
			leader.proc.signal(syscall.SIGSTOP)
			note(fmt.Sprintf("round %d: SIGSTOP leader %s", round+1, leader.name))
			note("new leader " + c.leader(leader).name)
			leader.proc.signal(syscall.SIGCONT)
			note("SIGCONT " + leader.name)
		case 2:
			c.lan.ip(t, "link set "+leader.link+" down")
			note(fmt.Sprintf("round %d: partitioned leader %s (link down)", round+1, leader.name))
			note("new leader " + c.leader(leader).name)
			c.lan.ip(t, "link set "+leader.link+" up")
			note("healed " + leader.name)
		}
		settle()
	}
	stop()
	workers.Wait()

	// Read back every write to a key of its own.
	pairs, _, err := c.client.api.KV().List("faults/log/", &api.QueryOptions{RequireConsistent: true})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pairs {
		have[p.Key] = true
	}
	var lost, misreported []string
	for _, k := range h.acked {
		if !have[k] {
			lost = append(lost, k)
		}
	}
	for _, k := range h.refused {
		if have[k] {
			misreported = append(misreported, k)
		}
	}
	appliedUnknown := 0
	for _, k := range h.unknown {
		if have[k] {
			appliedUnknown++
		}
	}
	var counts []string
	for k, v := range h.outcomes {
		counts = append(counts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(counts)
	t.Logf("%d fault rounds; outcomes: %s", faultRounds, strings.Join(counts, ", "))
	t.Logf("own-key writes: %d acknowledged, %d failed saying nothing was written (or never sent), %d unknown (%d of those applied)", len(h.acked), len(h.refused), len(h.unknown), appliedUnknown)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost[:min(10, len(lost))])
	}
	if len(misreported) > 0 {
		t.Errorf("%d writes reported as not written were applied: %v", len(misreported), misreported[:min(10, len(misreported))])
	}

	h.mu.Lock()
	end := h.now()
	for _, i := range h.open {
		h.ops[i].Return = end
	}
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(faultModel, ops, 90*time.Second)
	t.Logf("porcupine: %s over %d operations in %v", resultText(res), len(ops), time.Since(start).Round(time.Millisecond))
	if res != porcupine.Ok {
		info.AddAnnotations(faults)
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(faultModel, info, path); err == nil {
			t.Logf("history drawn in %s", path)
		}
		t.Errorf("the history is %s", resultText(res))
	}
}
