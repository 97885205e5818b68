// Command writepath says where one client's requests spend their time
// inside a server, from a Go execution trace of that server taken while
// exactly one client (one keep-alive connection) loads it: cairn's
// /debug/pprof/trace, or bench/barekv's.
//
// With one client every request runs alone, so at each instant of a
// request's round trip at most one of the server's goroutines does its
// work: the HTTP connection's, Raft's loop (and its log's sync), the state
// machine, ... or none, while the client and loopback carry the answer
// and the next request, or while a woken goroutine waits for a CPU. The
// tool splits the round trip by that, per request:
//
//	curl -o cairn.trace 'http://127.0.0.1:8500/debug/pprof/trace?seconds=3'  # while kvload -clients 1 runs
//	go run ./bench/writepath -trace cairn.trace
//
// It is a measuring tool, not a test: it knows the names of the
// goroutines it looks for (net/http's, hashicorp/raft's, cairn's write
// path) and puts any other goroutine under "other goroutines".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	path := flag.String("trace", "", "the execution trace to read (go tool trace's format)")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "writepath: give -trace FILE, a trace taken while one client loads the server")
		os.Exit(2)
	}
	f, err := os.Open(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "writepath:", err)
		os.Exit(1)
	}
	defer f.Close()
	s, err := split(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "writepath: %s: %v\n", *path, err)
		os.Exit(1)
	}
	s.print(os.Stdout)
}

// roles name the goroutines of a write's path by the function each
// starts in, in the order that decides which one an instant is charged
// to when two run at once.
var roles = []struct{ fn, label string }{
	{"github.com/hashicorp/raft.(*Raft).run", "Raft loop"},
	{"github.com/hashicorp/raft.(*Raft).runFSM", "state machine"},
	{"net/http.(*conn).serve", "HTTP connection"},
	{"github.com/cairn-dev/cairn/kv.(*Server).raftApply.func1", "wait for Raft's answer"},
	{"net/http.(*connReader).backgroundRead", "net/http background read"},
}

const (
	other  = "other goroutines"
	client = "client and loopback (the connection waits for the next request)"
	idle   = "no goroutine running (wake-ups, waiting for a CPU)"
)

func rank(label string) int {
	for i, r := range roles {
		if r.label == label {
			return i
		}
	}
	return len(roles)
}

// gor is one goroutine's state as the trace is read.
type gor struct {
	label   string
	state   trace.GoState
	reason  string // why it waits
	syscall string // which system call it is in
}

type summary struct {
	requests int
	window   time.Duration
	by       map[string]time.Duration
}

// split reads the trace and charges each instant between a connection's
// first and last answer.
func split(r io.Reader) (*summary, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	gs := map[trace.GoID]*gor{}
	get := func(id trace.GoID) *gor {
		g := gs[id]
		if g == nil {
			g = &gor{}
			gs[id] = g
		}
		return g
	}
	// Each connection that answers requests is followed; the one that
	// answered the most is the client's (another may be the one that
	// asked for the trace).
	conns := map[trace.GoID]*connSplit{}
	active := map[trace.GoID]*gor{} // running or in a system call
	var now trace.Time
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		for id, c := range conns {
			c.cur[charge(active, gs[id])] += time.Duration(ev.Time() - now)
		}
		now = ev.Time()
		id := st.Resource.Goroutine()
		g := get(id)
		_, to := st.Goroutine()
		if g.label == "" {
			g.label = labelOf(st.Stack)
		}
		g.state, g.reason, g.syscall = to, "", ""
		switch to {
		case trace.GoWaiting:
			g.reason = st.Reason
		case trace.GoSyscall:
			g.syscall = syscallOf(st.Stack)
		}
		if to == trace.GoRunning || to == trace.GoSyscall {
			active[id] = g
		} else {
			delete(active, id)
		}
		// A round trip ends when the connection's goroutine sends an
		// answer: net/http writes it out as the request finishes. (Not
		// when a request arrives: a connection that finds the next
		// request already there does not wait for it.)
		if g.label == "HTTP connection" && to == trace.GoSyscall && answers(st.Stack) {
			c := conns[id]
			if c == nil {
				conns[id] = &connSplit{start: now, cur: map[string]time.Duration{}, summary: summary{by: map[string]time.Duration{}}}
				continue
			}
			c.answered(now)
		}
	}
	var best *connSplit
	for _, c := range conns {
		if best == nil || c.requests > best.requests {
			best = c
		}
	}
	// What came after the last answer belongs to no whole request.
	if best == nil || best.requests == 0 {
		return nil, errors.New("no connection answered twice: take the trace while one client loads the server")
	}
	for _, c := range conns {
		if c != best && c.requests > best.requests/10 {
			return nil, fmt.Errorf("several connections served requests (%d and %d of them): take the trace while exactly one client loads the server", best.requests, c.requests)
		}
	}
	return &best.summary, nil
}

// connSplit follows the requests of one connection.
type connSplit struct {
	summary
	start trace.Time
	cur   map[string]time.Duration // since the last answer
}

// answered closes one request's round trip: from one answer to the next.
func (c *connSplit) answered(now trace.Time) {
	c.requests++
	c.window = time.Duration(now - c.start)
	for k, d := range c.cur {
		c.by[k] += d
	}
	clear(c.cur)
}

// charge names what the instant is spent on: the path's goroutine that
// runs (or is in a system call), else the client, else nothing.
func charge(active map[trace.GoID]*gor, conn *gor) string {
	best, bestRank := "", len(roles)+1
	for _, g := range active {
		label := g.label
		if label == "" || label == other {
			if g.state == trace.GoSyscall {
				// A goroutine off the path parked in a blocking
				// system call (a watch, a signal) is not working.
				continue
			}
			label = other
		}
		if r := rank(label); r < bestRank {
			best, bestRank = label, r
			if g.state == trace.GoSyscall {
				best += ": " + g.syscall
			}
		}
	}
	if best != "" {
		return best
	}
	if conn != nil && conn.state == trace.GoWaiting && conn.reason == "network" {
		return client
	}
	return idle
}

// labelOf names a goroutine by the function it started in (its stack's
// outermost frame), skipping hashicorp/raft's wrapper.
func labelOf(stack trace.Stack) string {
	outer := ""
	for fr := range stack.Frames() {
		if !strings.HasPrefix(fr.Func, "runtime.") && !strings.HasSuffix(fr.Func, "goFunc.func1") {
			outer = fr.Func
		}
	}
	if outer == "" {
		return ""
	}
	for _, r := range roles {
		if r.fn == outer {
			return r.label
		}
	}
	return other
}

// answers reports whether a system call is net/http's write of a
// finished request's answer.
func answers(stack trace.Stack) bool {
	for fr := range stack.Frames() {
		if fr.Func == "net/http.(*response).finishRequest" {
			return true
		}
	}
	return false
}

// syscallOf names the system call a goroutine entered.
func syscallOf(stack trace.Stack) string {
	for fr := range stack.Frames() {
		switch fr.Func {
		case "syscall.Fsync", "syscall.Fdatasync":
			return "sync to disk"
		case "syscall.write", "syscall.pwrite":
			return "write"
		case "syscall.read", "syscall.pread":
			return "read"
		}
	}
	return "other system call"
}

func (s *summary) print(w io.Writer) {
	per := func(d time.Duration) float64 { return float64(d) / float64(s.requests) / 1e3 }
	fmt.Fprintf(w, "%d requests in %v: %.1f µs each\n", s.requests, s.window.Round(time.Millisecond), per(s.window))
	type row struct {
		what string
		d    time.Duration
	}
	var rows []row
	for k, d := range s.by {
		if d > 0 {
			rows = append(rows, row{k, d})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].d > rows[j].d })
	for _, r := range rows {
		fmt.Fprintf(w, "  %7.1f µs  %s\n", per(r.d), r.what)
	}
}
