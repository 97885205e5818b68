package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

// deadline bounds every wait in these tests. It is generous because -race
// on two cores is slow; the waits return as soon as the condition holds.
const deadline = 15 * time.Second

// testMember is a Membership on 127.0.0.1 with its own captured log.
type testMember struct {
	*Membership
	logs *logSink
}

// newMember starts a Fast member named name on 127.0.0.1 with a port the
// kernel picks, shut down when the test ends. opts tweak its Config.
func newMember(t *testing.T, name string, opts ...func(*Config)) *testMember {
	t.Helper()
	cfg, logs := testConfig(t, name, opts...)
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return &testMember{Membership: m, logs: logs}
}

func testConfig(t *testing.T, name string, opts ...func(*Config)) (Config, *logSink) {
	t.Helper()
	logs := newLogSink(t, name)
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.Fast = true
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, o := range opts {
		o(&cfg)
	}
	return cfg, logs
}

func asServer(raftPort int) func(*Config) {
	return func(c *Config) {
		c.Meta.Role = RoleServer
		c.Meta.RaftAddr = fmt.Sprintf("127.0.0.1:%d", raftPort)
	}
}

func withKey(key []byte) func(*Config) { return func(c *Config) { c.EncryptKey = key } }

func (m *testMember) addr() string { return m.LocalMember().AddrPort().String() }

// join joins m to other, failing the test on error.
func (m *testMember) join(t *testing.T, other *testMember) {
	t.Helper()
	if _, err := m.Join([]string{other.addr()}); err != nil {
		t.Fatalf("%s joins %s: %v", m.LocalMember().Name, other.LocalMember().Name, err)
	}
}

// waitMembers blocks on m's watch set until cond holds for its member
// list, and returns that list. It checks on every wake-up that the index
// grew, and fails with the last list seen when the deadline passes.
func waitMembers(t *testing.T, m *testMember, what string, cond func([]Member) bool) []Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var lastIndex uint64
	for wakes := 0; ; wakes++ {
		ws := memdb.NewWatchSet()
		index, members := m.Members(ws)
		if wakes > 0 && index <= lastIndex {
			t.Fatalf("%s: watch fired but index went from %d to %d", m.LocalMember().Name, lastIndex, index)
		}
		lastIndex = index
		if cond(members) {
			return members
		}
		if err := ws.WatchCtx(ctx); err != nil {
			t.Fatalf("%s: %s: not within %v; members: %s", m.LocalMember().Name, what, deadline, describe(members))
		}
	}
}

// waitStatus waits until m sees every one of names with status want.
func waitStatus(t *testing.T, m *testMember, want Status, names ...string) []Member {
	t.Helper()
	return waitMembers(t, m, fmt.Sprintf("%v %s", names, want), func(ms []Member) bool {
		for _, n := range names {
			if mem, ok := find(ms, n); !ok || mem.Status != want {
				return false
			}
		}
		return true
	})
}

func find(ms []Member, name string) (Member, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func describe(ms []Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "[%s %s %s] ", m.Name, m.AddrPort(), m.Status)
	}
	return b.String()
}

// freePort returns a port that is free for both TCP and UDP on 127.0.0.1
// right now (memberlist needs both).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP on 127.0.0.1")
	return 0
}

// logSink collects one member's log lines so tests can wait for one, and
// prints them (Info and up) if the test fails, or always with DUMPLOGS=1. It never calls t.Log from
// memberlist's goroutines, which may outlive the test.
type logSink struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func newLogSink(t *testing.T, name string) *logSink {
	s := &logSink{changed: make(chan struct{})}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("DUMPLOGS") == "" {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.lines {
			if !strings.Contains(l, "level=DEBUG") {
				t.Logf("%s: %s", name, l)
			}
		}
	})
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, strings.TrimRight(string(p), "\n"))
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

// matching returns the lines that contain every one of subs.
func (s *logSink) matching(subs ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return matchLines(s.lines, subs)
}

func matchLines(lines, subs []string) []string {
	var out []string
next:
	for _, l := range lines {
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// wait blocks until n lines contain every one of subs.
func (s *logSink) wait(t *testing.T, n int, subs ...string) []string {
	t.Helper()
	timeout := time.NewTimer(deadline)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		got := matchLines(s.lines, subs)
		ch := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("no %d log lines with %q within %v (found %d)", n, subs, deadline, len(got))
		}
	}
}
