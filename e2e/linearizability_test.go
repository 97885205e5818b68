//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/consul/api"
)

// TestLinearizableThroughLeaderChanges runs clients bound to every agent
// (three servers and a client agent) doing puts, consistent gets and
// check-and-sets on a few keys while the leader is killed with SIGKILL
// and restarted, then stopped with SIGTERM and restarted. Porcupine must
// find the recorded history linearizable. To show the check can fail,
// the same history with one stale read added must be found illegal.
func TestLinearizableThroughLeaderChanges(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, 1)
	c.leader()

	rec := newKVHistory()
	keys := []string{"lin/a", "lin/b", "lin/c", "lin/d"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var workers sync.WaitGroup
	for id, n := range c.all() {
		workers.Go(func() { runKVClient(ctx, id, n.api, keys, rec) })
	}

	// The faults, each once the clients have made progress since the
	// last one. Both stopped leaders come back on their data dirs.
	var faults []porcupine.Annotation
	fault := func(desc string) {
		t.Logf("%v: %s", time.Duration(rec.now()), desc)
		faults = append(faults, porcupine.Annotation{Tag: "faults", Start: rec.now(), Description: desc})
	}
	rec.runFor(t, 3*time.Second, 200)
	first := c.leader()
	first.kill()
	fault("SIGKILL leader " + first.name)
	fault("new leader " + c.leader().name)
	c.restart(first)
	c.waitReady(first)
	fault("restarted " + first.name)

	rec.runFor(t, 3*time.Second, 200)
	second := c.leader()
	second.term()
	fault("SIGTERM leader " + second.name)
	fault("new leader " + c.leader().name)
	c.restart(second)
	c.waitReady(second)
	eventually(t, second.name+" a voter again", 20*time.Second, func() (bool, string) {
		rs, err := second.raftServers()
		return err == nil && len(rs) == 3, fmt.Sprint(rs, errText(err))
	})
	fault("restarted " + second.name)

	rec.runFor(t, 3*time.Second, 200)
	stop()
	workers.Wait()
	ops := rec.operations()
	t.Logf("history: %s", rec.summary())

	// Every value is written once, so every read of it sees one
	// ModifyIndex; two mean a write was applied twice.
	indexes := map[string]map[uint64]bool{}
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if in.op != "get" || out.value == "" {
			continue
		}
		if indexes[out.value] == nil {
			indexes[out.value] = map[uint64]bool{}
		}
		indexes[out.value][out.index] = true
	}
	for v, idx := range indexes {
		if len(idx) > 1 {
			t.Errorf("value %q was read at ModifyIndex %v: written more than once", v, slices.Sorted(maps.Keys(idx)))
		}
	}

	start := time.Now()
	res := porcupine.CheckOperationsTimeout(kvModel, ops, 60*time.Second)
	t.Logf("porcupine: %v in %v", res, time.Since(start).Round(time.Millisecond))
	if res != porcupine.Ok {
		_, info := porcupine.CheckOperationsVerbose(kvModel, ops, 60*time.Second)
		logViolation(t, ops, faults)
		info.AddAnnotations(faults)
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Logf("visualize: %v", err)
		}
		t.Fatalf("history of %d operations is %v, want linearizable (%s; visualization in %s, kept with -artifacts)", len(ops), resultText(res), rec.summary(), path)
	}

	// Not vacuous: a read, after a write was overwritten, that returns
	// the overwritten value is a violation the checker must report.
	stale, ok := staleRead(ops, len(c.all()))
	if !ok {
		t.Fatal("no key has two successive acknowledged writes to build a stale read from")
	}
	bad := append(ops[:len(ops):len(ops)], stale)
	if res := porcupine.CheckOperationsTimeout(kvModel, bad, 60*time.Second); res != porcupine.Illegal {
		t.Errorf("history plus the stale read %s is %v; want a violation", kvModel.DescribeOperation(stale.Input, stale.Output), resultText(res))
	}
}

func resultText(r porcupine.CheckResult) string {
	switch r {
	case porcupine.Ok:
		return "linearizable"
	case porcupine.Illegal:
		return "not linearizable"
	}
	return "undecided (the checker timed out)"
}

// kvInput is one operation on one key. The values written are unique,
// so a value names the write that made it.
type kvInput struct {
	op    string // "get", "put" or "cas"
	key   string
	value string // put, cas: the value written
	from  string // cas: the value it expects; "" is no key
}

// kvOutput is its answer.
type kvOutput struct {
	value   string // get: the value read; "" is no key
	index   uint64 // get: its ModifyIndex (not part of the model)
	ok      bool   // cas: swapped
	unknown bool   // put, cas: no answer; it may or may not have happened
}

// kvModel is a register per key (porcupine checks the keys apart). A cas
// here compares values; the client sends Consul's check-and-set by the
// ModifyIndex it read with that value, which is the same test because
// every write writes a new value.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		cur, in, out := state.(string), input.(kvInput), output.(kvOutput)
		switch in.op {
		case "get":
			return out.value == cur, cur
		case "put":
			return true, in.value
		case "cas":
			swap := cur == in.from
			if out.unknown {
				if swap {
					return true, in.value
				}
				return true, cur
			}
			if swap {
				return out.ok, in.value
			}
			return !out.ok, cur
		}
		return false, cur
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.op == "get":
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		case out.unknown && in.op == "put":
			return fmt.Sprintf("put(%s, %q) -> ?", in.key, in.value)
		case in.op == "put":
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		case out.unknown:
			return fmt.Sprintf("cas(%s, %q -> %q) -> ?", in.key, in.from, in.value)
		}
		return fmt.Sprintf("cas(%s, %q -> %q) -> %v", in.key, in.from, in.value, out.ok)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// kvHistory records operations with call and return times since it began.
// Operations that got no answer are kept with no return time until
// operations() gives them the end of the history: porcupine may then
// place them anywhere after their call, or nowhere that matters.
type kvHistory struct {
	start time.Time
	ok    atomic.Int64  // operations with an answer
	okCh  chan struct{} // a token per answer, for runFor

	mu      sync.Mutex
	ops     []porcupine.Operation
	unknown []int // indexes into ops
	dropped int   // failed reads and requests never sent
}

func newKVHistory() *kvHistory {
	return &kvHistory{start: time.Now(), okCh: make(chan struct{}, 1)}
}

func (h *kvHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *kvHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.Output.(kvOutput).unknown {
		h.unknown = append(h.unknown, len(h.ops))
	} else {
		h.ok.Add(1)
		select {
		case h.okCh <- struct{}{}:
		default:
		}
	}
	h.ops = append(h.ops, op)
}

func (h *kvHistory) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropped++
}

// runFor lets the clients run for at least d and until they have had n
// more answers.
func (h *kvHistory) runFor(t *testing.T, d time.Duration, n int64) {
	t.Helper()
	want := h.ok.Load() + n
	long := time.After(d)
	timeout := time.After(d + 30*time.Second)
	for long != nil || h.ok.Load() < want {
		select {
		case <-long:
			long = nil
		case <-h.okCh:
		case <-timeout:
			t.Fatalf("clients had %d answers in %v; want %d (%s)", h.ok.Load()-want+n, d+30*time.Second, n, h.summary())
		}
	}
}

// operations returns the history, the unanswered operations ending now.
func (h *kvHistory) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.now()
	for _, i := range h.unknown {
		h.ops[i].Return = end
	}
	return append([]porcupine.Operation(nil), h.ops...)
}

func (h *kvHistory) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts := map[string]int{}
	for _, op := range h.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		switch {
		case out.unknown:
			counts[in.op+"?"]++
		case in.op == "cas" && !out.ok:
			counts["cas-false"]++
		default:
			counts[in.op]++
		}
	}
	return fmt.Sprintf("%d operations: %d get, %d put, %d cas swapped, %d cas refused, %d put and %d cas unanswered; %d failed reads or unsent requests left out",
		len(h.ops), counts["get"], counts["put"], counts["cas"], counts["cas-false"], counts["put?"], counts["cas?"], h.dropped)
}

// runKVClient is one client of the history: until ctx ends it picks a
// key and does a consistent get, a put of a new value, or a
// check-and-set from the last value it read, about every 10 ms. After a
// failure it waits 250 ms, so that an outage adds few unanswered writes:
// each one stays open to the end of the history, and porcupine's search
// grows exponentially with the unanswered writes open at once on a key.
func runKVClient(ctx context.Context, id int, c *api.Client, keys []string, h *kvHistory) {
	type seen struct {
		value string
		index uint64
	}
	last := map[string]seen{}
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		key := keys[rand.IntN(len(keys))]
		value := fmt.Sprintf("c%d-%d", id, seq)
		base, known := last[key]
		in := kvInput{op: "get", key: key}
		switch r := rand.Float64(); {
		case r < 0.4:
		case r < 0.75 || !known:
			in = kvInput{op: "put", key: key, value: value}
		default:
			in = kvInput{op: "cas", key: key, value: value, from: base.value}
		}

		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		call := h.now()
		var (
			out kvOutput
			err error
		)
		switch in.op {
		case "get":
			var kv *api.KVPair
			kv, _, err = c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(octx))
			if err == nil {
				s := seen{}
				if kv != nil {
					s = seen{string(kv.Value), kv.ModifyIndex}
				}
				last[key] = s
				out.value, out.index = s.value, s.index
			}
		case "put":
			_, err = c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, (&api.WriteOptions{}).WithContext(octx))
		case "cas":
			out.ok, _, err = c.KV().CAS(&api.KVPair{Key: key, Value: []byte(value), ModifyIndex: base.index}, (&api.WriteOptions{}).WithContext(octx))
		}
		ret := h.now()
		cancel()
		if ctx.Err() != nil && err != nil {
			// Cut off by the end of the test: unanswered.
			if in.op != "get" {
				h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: kvOutput{unknown: true}})
			}
			return
		}
		switch {
		case err == nil:
			h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
			continue
		case in.op == "get" || notSent(err):
			h.drop() // no effect on the store
		default:
			h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: kvOutput{unknown: true}})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notSent reports whether a request failed before reaching the agent:
// its connection could not be made (the agent is down).
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// staleRead builds a read that returns an overwritten value after the
// overwrite was acknowledged: a put or swap of a key to v1 answered, then
// a later one (called after that answer) to v2 answered, then a read of
// v1 by a client of its own. It takes the earliest such overwrite, so
// little of the history comes before the read and the checker's proof of
// the violation stays small.
func staleRead(ops []porcupine.Operation, client int) (porcupine.Operation, bool) {
	wrote := func(op porcupine.Operation) bool {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		return !out.unknown && (in.op == "put" || in.op == "cas" && out.ok)
	}
	first := map[string]porcupine.Operation{} // per key, the write answered first
	for _, op := range ops {
		k := op.Input.(kvInput).key
		if w, ok := first[k]; wrote(op) && (!ok || op.Return < w.Return) {
			first[k] = op
		}
	}
	var (
		w1, w2 porcupine.Operation
		found  bool
	)
	for _, op := range ops {
		f, ok := first[op.Input.(kvInput).key]
		if ok && wrote(op) && op.Call > f.Return && (!found || op.Return < w2.Return) {
			w1, w2, found = f, op, true
		}
	}
	return porcupine.Operation{
		ClientId: client,
		Input:    kvInput{op: "get", key: w1.Input.(kvInput).key},
		Call:     w2.Return + 1,
		Output:   kvOutput{value: w1.Input.(kvInput).value},
		Return:   w2.Return + 2,
	}, found
}

// logViolation writes, for each key whose history is not linearizable,
// its operations around the point where the longest linearization
// stops, and the faults, so a failure can be read from the test log.
func logViolation(t *testing.T, ops []porcupine.Operation, faults []porcupine.Annotation) {
	t.Helper()
	for _, f := range faults {
		t.Logf("fault at %v: %s", time.Duration(f.Start), f.Description)
	}
	for _, part := range kvModel.Partition(ops) {
		res, info := porcupine.CheckOperationsVerbose(kvModel, part, 30*time.Second)
		if res != porcupine.Illegal {
			continue
		}
		var longest []porcupine.Operation
		for _, lin := range info.PartialLinearizationsOperations() {
			for _, l := range lin {
				if len(l) > len(longest) {
					longest = l
				}
			}
		}
		var at int64
		if len(longest) > 0 {
			at = longest[len(longest)-1].Call
		}
		sorted := slices.Clone(part)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
		t.Logf("key %s: not linearizable; %d operations linearize, the last called at %v; operations around it:", part[0].Input.(kvInput).key, len(longest), time.Duration(at))
		for _, op := range sorted {
			if op.Call < at-int64(500*time.Millisecond) || op.Call > at+int64(500*time.Millisecond) {
				continue
			}
			t.Logf("  client %d [%v, %v] %s (index %d)", op.ClientId, time.Duration(op.Call), time.Duration(op.Return), kvModel.DescribeOperation(op.Input, op.Output), op.Output.(kvOutput).index)
		}
	}
}
