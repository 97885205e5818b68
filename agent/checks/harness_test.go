package checks

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Sink that writes down what it is told, one line per call:
//
//	update web passing "TCP connect 10.0.0.1:80: Success"
//	deregister web
//
// Inside a synctest bubble, where time is deterministic, each line starts
// with the time since the recorder was made ("1m30s deregister web").
type recorder struct {
	stamped bool
	start   time.Time

	mu      sync.Mutex
	lines   []string
	last    map[string]Status // each check's last reported status
	changed chan struct{}     // poked on every call, for waitLines
}

func newRecorder(stamped bool) *recorder {
	return &recorder{stamped: stamped, start: time.Now(), last: map[string]Status{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) UpdateCheck(id string, status Status, output string) {
	r.mu.Lock()
	r.last[id] = status
	r.mu.Unlock()
	r.add(fmt.Sprintf("update %s %s %q", id, status, output))
}

func (r *recorder) DeregisterService(serviceID string) { r.add("deregister " + serviceID) }

func (r *recorder) add(line string) {
	if r.stamped {
		line = time.Since(r.start).String() + " " + line
	}
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// status is check id's last reported status, or def's initial one.
func (r *recorder) status(id string) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.last[id]; ok {
		return s
	}
	return Critical
}

// transcript returns the lines since the last transcript, one per line,
// and forgets them.
func (r *recorder) transcript() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.lines, "\n")
	r.lines = nil
	return s
}

// waitLines waits (in real time, outside a bubble) until n lines are
// recorded, then returns them as transcript does. It fails the test after
// 10 s, showing what it got.
func (r *recorder) waitLines(t *testing.T, n int) string {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := len(r.lines)
		r.mu.Unlock()
		if got >= n {
			return r.transcript()
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("waited 10s for %d Sink calls; got:\n%s", n, r.transcript())
		}
	}
}

// testConfig is the Config of the tests: a recorder as Sink, no stagger,
// script checks on, logs into the test's output.
func testConfig(t *testing.T, rec *recorder) Config {
	cfg := DefaultConfig()
	cfg.Sink = rec
	cfg.DisableStagger = true
	cfg.EnableScriptChecks = true
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

// startRunner makes a Runner with testConfig (changed by change, if not
// nil), adds defs and runs it until the test ends. Inside a bubble the
// recorder stamps its lines.
func startRunner(t *testing.T, bubble bool, change func(*Config), defs ...Definition) (*Runner, *recorder) {
	t.Helper()
	rec := newRecorder(bubble)
	cfg := testConfig(t, rec)
	if change != nil {
		change(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, d := range defs {
		if err := r.Add(d); err != nil {
			t.Fatalf("Add(%q): %v", d.ID, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	return r, rec
}

// fakeDialer is Config.DialContext for tests inside a synctest bubble,
// where real sockets cannot be used. Each dial takes the next outcome of
// a script: '+' connects (a net.Pipe whose other end is closed at once),
// '-' is refused. The last outcome repeats. It records the addresses
// dialled.
type fakeDialer struct {
	mu       sync.Mutex
	outcomes string
	n        int      // dials so far
	dials    []string // addresses dialled since the last dialled()
}

func (f *fakeDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(f.n, len(f.outcomes)-1)
	f.n++
	f.dials = append(f.dials, address)
	if f.outcomes[i] == '-' {
		return nil, fmt.Errorf("dial %s %s: connect: connection refused", network, address)
	}
	client, server := net.Pipe()
	server.Close()
	return client, nil
}

// dialled returns the addresses dialled since the last call, space
// separated, and forgets them.
func (f *fakeDialer) dialled() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := strings.Join(f.dials, " ")
	f.dials = f.dials[:0:0]
	return s
}

// withDialer makes startRunner's Config use f.
func withDialer(f *fakeDialer) func(*Config) {
	return func(c *Config) { c.DialContext = f.DialContext }
}
