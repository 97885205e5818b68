package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/memberlist"
)

// cluster3 starts a (server), b (client) and c (server) and joins them
// through different members: b joins a, c joins b.
func cluster3(t *testing.T, opts ...func(*Config)) (a, b, c *testMember) {
	t.Helper()
	a = newMember(t, "a", append([]func(*Config){asServer(18300)}, opts...)...)
	b = newMember(t, "b", opts...)
	c = newMember(t, "c", append([]func(*Config){asServer(18302)}, opts...)...)
	b.join(t, a)
	c.join(t, b)
	for _, m := range []*testMember{a, b, c} {
		waitStatus(t, m, StatusAlive, "a", "b", "c")
	}
	return a, b, c
}

var equateAddr = cmpopts.EquateComparable(netip.Addr{})

func TestJoinThreeMembersSeeEachOtherWithMeta(t *testing.T) {
	const id = "6a2f5c9e-0b1d-4e8f-9c3a-2d7b1e0f4a56"
	a, b, c := cluster3(t, func(c *Config) {
		c.Meta.Datacenter = "east"
		if c.NodeName == "a" {
			c.Meta.NodeID = id
		}
	})

	want := []Member{
		{Name: "a", Addr: a.LocalMember().Addr, Port: a.LocalMember().Port, Status: StatusAlive,
			Meta: Meta{Role: RoleServer, Datacenter: "east", RaftAddr: "127.0.0.1:18300", NodeID: id, Proto: 1, HTTPPort: 8500, DNSPort: 8600}},
		{Name: "b", Addr: b.LocalMember().Addr, Port: b.LocalMember().Port, Status: StatusAlive,
			Meta: Meta{Role: RoleClient, Datacenter: "east", Proto: 1, HTTPPort: 8500, DNSPort: 8600}},
		{Name: "c", Addr: c.LocalMember().Addr, Port: c.LocalMember().Port, Status: StatusAlive,
			Meta: Meta{Role: RoleServer, Datacenter: "east", RaftAddr: "127.0.0.1:18302", Proto: 1, HTTPPort: 8500, DNSPort: 8600}},
	}
	for _, m := range []*testMember{a, b, c} {
		index, got := m.Members(nil)
		if index == 0 {
			t.Errorf("%s: Members index = 0, want > 0", m.LocalMember().Name)
		}
		if diff := cmp.Diff(want, got, equateAddr); diff != "" {
			t.Errorf("%s: Members() mismatch (-want +got):\n%s", m.LocalMember().Name, diff)
		}
		if diff := cmp.Diff([]Member{want[0], want[2]}, m.Servers(), equateAddr); diff != "" {
			t.Errorf("%s: Servers() mismatch (-want +got):\n%s", m.LocalMember().Name, diff)
		}
	}
	if got := a.LocalMember().Addr.String(); got != "127.0.0.1" {
		t.Errorf("LocalMember().Addr = %s, want 127.0.0.1", got)
	}
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	a, b, c := cluster3(t)

	if err := c.Leave(deadline); err != nil {
		t.Fatalf("c.Leave: %v", err)
	}
	if got := c.LocalMember().Status; got != StatusLeft {
		t.Errorf("c.LocalMember().Status after Leave = %q, want %q", got, StatusLeft)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatalf("c.Shutdown: %v", err)
	}
	for _, m := range []*testMember{a, b} {
		waitStatus(t, m, StatusLeft, "c")
		// On the way, they saw it leaving: that flag is how they tell a
		// leave from a failure.
		m.logs.wait(t, 1, `msg="member leaving" node=c`)
		for _, s := range m.Servers() {
			if s.Name == "c" {
				t.Errorf("%s: Servers() still lists c after it left", m.LocalMember().Name)
			}
		}
	}
	// A member that left is not reported failed later (it stops answering
	// probes, but memberlist does not probe a member that left). c is in
	// the list of b with status left; it must never turn "failed", so
	// check the logs saw no such transition either.
	for _, m := range []*testMember{a, b} {
		if lines := m.logs.matching("member failed", "node=c"); len(lines) > 0 {
			t.Errorf("%s saw c fail after it left: %q", m.LocalMember().Name, lines)
		}
	}
	if _, err := c.Join([]string{a.addr()}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Leave and Shutdown = %v, want ErrShutdown", err)
	}
	if err := c.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown = %v, want ErrShutdown", err)
	}
	if err := c.Shutdown(); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

// TestLeaveCorrectsAFailureSeenFirst: where memberlist's leave message
// overtakes the meta update with the leaving flag, the others would mark
// the member failed; the msgLeft that Leave gossips says it is leaving,
// or, to those that saw it fail, that it left. The race itself needs a
// lost or late datagram, so the test takes its halves apart: what a
// leaving member queues, what a member makes of it, and what memberlist's
// leave without the flag then makes of a member known to be leaving.
func TestLeaveCorrectsAFailureSeenFirst(t *testing.T) {
	c := newMember(t, "c") // alone: nothing drains its queue
	if err := c.Leave(deadline); err != nil {
		t.Fatalf("c.Leave: %v", err)
	}
	var sent []byte
	for _, msg := range (delegate{c.Membership}).GetBroadcasts(0, 1400) {
		if msg[0] == msgLeft {
			sent = msg
		}
	}
	if string(sent) != "\x04c" {
		t.Fatalf("after Leave, c queued no msgLeft for itself (sent %q)", sent)
	}

	a := newMember(t, "a")
	cAddr := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		seen, want Status
	}{
		{StatusFailed, StatusLeft},     // the leave came before the flag
		{StatusLeft, StatusLeft},       // the flag came first: nothing to do
		{StatusLeaving, StatusLeaving}, // the leave itself is still to come
		{StatusAlive, StatusLeaving},   // the flag is still to come, or lost
	} {
		a.table.set(Member{Name: "c", Addr: cAddr, Port: 1, Status: tc.seen}, time.Now())
		(delegate{a.Membership}).NotifyMsg(sent)
		if mem, _ := find(second(a.Members(nil)), "c"); mem.Status != tc.want {
			t.Errorf("a saw c %s, then got c's msgLeft: c is %s, want %s", tc.seen, mem.Status, tc.want)
		}
	}
	a.logs.wait(t, 1, `msg="member left (it said so as it went)" node=c was=failed`)

	// c is leaving for a (the last case); memberlist's leave without the
	// flag then makes it left, not failed.
	(delegate{a.Membership}).NotifyLeave(&memberlist.Node{Name: "c", Addr: cAddr.AsSlice(), Port: 1})
	if mem, _ := find(second(a.Members(nil)), "c"); mem.Status != StatusLeft {
		t.Errorf("c was leaving for a, then went without the flag: c is %s, want left", mem.Status)
	}
}

func TestCrashIsSeenAsFailedAndEveryChangeFiresTheWatch(t *testing.T) {
	a, b, c := cluster3(t)

	ws := memdb.NewWatchSet()
	startIndex, _ := a.Members(ws)
	start := time.Now()
	c.Shutdown() // no Leave: a crash as far as the others can tell

	// The watch set taken before the crash fires.
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := ws.WatchCtx(ctx); err != nil {
		t.Fatalf("a's watch set did not fire within %v after c crashed", deadline)
	}
	waitStatus(t, a, StatusFailed, "c") // checks the index on each wake-up
	t.Logf("a saw c failed %v after the crash", time.Since(start).Round(10*time.Millisecond))
	waitStatus(t, b, StatusFailed, "c")

	index, members := a.Members(nil)
	if index <= startIndex {
		t.Errorf("index after c failed = %d, want > %d", index, startIndex)
	}
	if got := len(members); got != 3 {
		t.Errorf("a lists %d members after c failed, want 3 (failed ones stay): %s", got, describe(members))
	}
	if got := a.Servers(); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("a.Servers() = %s, want only a", describe(got))
	}
}

func TestRejoin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		leave    bool // gracefully, else crash
		samePort bool
	}{
		{"after failing, same address", false, true},
		{"after failing, new port (a container restarted with a new IP)", false, false},
		{"after leaving, same address", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newMember(t, "a")
			b := newMember(t, "b")
			b.join(t, a)
			waitStatus(t, a, StatusAlive, "b")
			oldPort := b.LocalMember().Port
			down := StatusFailed
			if tc.leave {
				down = StatusLeft
				if err := b.Leave(deadline); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Join([]string{a.addr()}); !errors.Is(err, ErrLeft) {
					t.Errorf("Join after Leave = %v, want ErrLeft", err)
				}
			}
			b.Shutdown()
			waitStatus(t, a, down, "b")

			b2 := newMember(t, "b", func(c *Config) {
				if tc.samePort {
					c.BindPort = oldPort
				}
			})
			b2.join(t, a)
			ms := waitStatus(t, a, StatusAlive, "b")
			got, _ := find(ms, "b")
			if got.Port != b2.LocalMember().Port {
				t.Errorf("a sees b at port %d, want %d (the new agent)", got.Port, b2.LocalMember().Port)
			}
			waitStatus(t, b2, StatusAlive, "a", "b")
		})
	}
}

func TestEncryption(t *testing.T) {
	key1 := []byte("0123456789abcdef0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	for _, tc := range []struct {
		name              string
		clusterKey, other []byte
		wantErr           string // "" means the join works
	}{
		{"same key", key1, key1, ""},
		{"no key anywhere", nil, nil, ""},
		{"wrong key", key1, key2,
			"no reply we could decrypt: is -encrypt the same on every agent? (memberlist: no installed keys could decrypt the message)"},
		{"key joining a cluster without", nil, key1,
			"the agent there does not encrypt gossip but this one has -encrypt; give every agent the same -encrypt"},
		{"no key joining a cluster with one", key1, nil,
			"the agent there encrypts gossip but this one has no -encrypt; give every agent the same -encrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newMember(t, "a", withKey(tc.clusterKey))
			b := newMember(t, "b", withKey(tc.clusterKey))
			b.join(t, a)
			waitStatus(t, a, StatusAlive, "a", "b")
			index, _ := a.Members(nil)

			x := newMember(t, "x", withKey(tc.other))
			n, err := x.Join([]string{a.addr()})
			if tc.wantErr == "" {
				if err != nil || n != 1 {
					t.Fatalf("Join = %d, %v; want 1, nil", n, err)
				}
				waitStatus(t, a, StatusAlive, "x")
				waitStatus(t, b, StatusAlive, "x")
				return
			}
			want := "join " + a.addr() + ": " + tc.wantErr
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Join = %d, %v\nwant error containing %q", n, err, want)
			}
			if !errors.Is(err, ErrEncryptionMismatch) {
				t.Errorf("errors.Is(%v, ErrEncryptionMismatch) = false", err)
			}
			// a rejected the joiner while reading its message, before
			// replying, so nothing can have changed there since.
			if got, ms := a.Members(nil); got != index || len(ms) != 2 {
				t.Errorf("a after the failed join: index %d (was %d), members %s; want unchanged", got, index, describe(ms))
			}
			if _, ms := x.Members(nil); len(ms) != 1 {
				t.Errorf("the joiner lists %s, want only itself", describe(ms))
			}
			// The cluster still works: c (right key) joins through b, and
			// x is nowhere.
			c := newMember(t, "c", withKey(tc.clusterKey))
			c.join(t, b)
			for _, m := range []*testMember{a, b, c} {
				ms := waitStatus(t, m, StatusAlive, "a", "b", "c")
				if _, ok := find(ms, "x"); ok || len(ms) != 3 {
					t.Errorf("%s lists %s, want a, b, c", m.LocalMember().Name, describe(ms))
				}
			}
		})
	}
}

func TestDuplicateNameIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string // the member the impostor joins through
	}{
		{"joining through another member", "b"},
		{"joining through the owner of the name", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newMember(t, "a")
			b := newMember(t, "b")
			b.join(t, a)
			waitStatus(t, a, StatusAlive, "a", "b")
			target := map[string]*testMember{"a": a, "b": b}[tc.target]

			dup := newMember(t, "a")
			n, err := dup.Join([]string{target.addr()})
			want := fmt.Sprintf("join %s: node name \"a\" is already used by %s in this cluster; give this agent another -node", target.addr(), a.addr())
			if err == nil || err.Error() != want {
				t.Fatalf("impostor's Join = %d, %v\nwant error %q", n, err, want)
			}
			if !errors.Is(err, ErrNameConflict) {
				t.Errorf("errors.Is(%v, ErrNameConflict) = false", err)
			}

			// The cluster side refuses the impostor's list too, and says so.
			target.logs.wait(t, 1, "refused a join", `node name \"a\" is claimed by `+dup.addr()+" but already used by "+a.addr())
			for _, m := range []*testMember{a, b} {
				_, ms := m.Members(nil)
				got, _ := find(ms, "a")
				if len(ms) != 2 || got.Port != a.LocalMember().Port || got.Status != StatusAlive {
					t.Errorf("%s lists %s; want a at %s alive, and b", m.LocalMember().Name, describe(ms), a.addr())
				}
			}
			if _, ms := dup.Members(nil); len(ms) != 1 {
				t.Errorf("the impostor lists %s, want only itself", describe(ms))
			}

			// Renamed, it joins.
			dup.Shutdown()
			ok := newMember(t, "a2")
			ok.join(t, target)
			waitStatus(t, a, StatusAlive, "a", "a2", "b")
		})
	}
}

func TestRetryJoinKeepsTryingUntilSomeoneIsThere(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	a := newMember(t, "a")

	// Nothing there: it retries until ctx ends, logging each attempt once.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	err := a.RetryJoin(ctx, []string{addr})
	cancel()
	wantErr := "retry-join " + addr + ": gave up after "
	if err == nil || !strings.Contains(err.Error(), wantErr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RetryJoin with nothing there = %v; want an error containing %q wrapping context.DeadlineExceeded", err, wantErr)
	}
	attempts := a.logs.matching("join failed; will retry")
	if len(attempts) < 2 {
		t.Fatalf("logged %d failed attempts, want several: %q", len(attempts), attempts)
	}
	for i, l := range attempts {
		for _, want := range []string{fmt.Sprintf("attempt=%d ", i+1), "join " + addr + ": nothing is listening there"} {
			if !strings.Contains(l, want) {
				t.Errorf("attempt log %q lacks %q", l, want)
			}
		}
	}
	if !strings.Contains(err.Error(), "last error: join "+addr+": nothing is listening there") {
		t.Errorf("RetryJoin error %q does not give the last reason", err)
	}

	// Again, and a member turns up at that address while it retries.
	done := make(chan error, 1)
	go func() { done <- a.RetryJoin(context.Background(), []string{addr}) }()
	before := len(attempts)
	a.logs.wait(t, before+2, "join failed; will retry")
	b := newMember(t, "b", func(c *Config) { c.BindPort = port })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RetryJoin = %v, want nil once b is up", err)
		}
	case <-time.After(deadline):
		t.Fatalf("RetryJoin did not return within %v of b starting", deadline)
	}
	waitStatus(t, b, StatusAlive, "a", "b")
}

func TestForceLeave(t *testing.T) {
	a, b, c := cluster3(t)

	for _, tc := range []struct{ node, want string }{
		{"nope", `force-leave "nope": no such member; see the names in "cairn members"`},
		{"b", fmt.Sprintf(`force-leave "b": member is not failed: it is alive at %s; only a failed member can be forced out (stop its agent, or run leave on it)`, b.addr())},
	} {
		if err := a.ForceLeave(tc.node); err == nil || err.Error() != tc.want {
			t.Errorf("ForceLeave(%q) = %v\nwant %q", tc.node, err, tc.want)
		}
	}

	c.Shutdown()
	waitStatus(t, a, StatusFailed, "c")
	waitStatus(t, b, StatusFailed, "c")
	if err := a.ForceLeave("c"); err != nil {
		t.Fatalf("ForceLeave(c) = %v", err)
	}
	if mem, _ := find(second(a.Members(nil)), "c"); mem.Status != StatusLeft {
		t.Errorf("right after ForceLeave, a sees c %s, want left", mem.Status)
	}
	waitStatus(t, b, StatusLeft, "c") // told by gossip
	if err := a.ForceLeave("c"); err != nil {
		t.Errorf("ForceLeave(c) again = %v, want nil", err)
	}
}

func second[A, B any](_ A, b B) B { return b }

func TestFailedMembersAreReaped(t *testing.T) {
	a := newMember(t, "a", func(c *Config) { c.ReapFailedAfter = 300 * time.Millisecond })
	b := newMember(t, "b")
	b.join(t, a)
	waitStatus(t, a, StatusAlive, "b")
	b.Shutdown()
	waitStatus(t, a, StatusFailed, "b")
	waitMembers(t, a, "b reaped", func(ms []Member) bool { _, ok := find(ms, "b"); return !ok })
	a.logs.wait(t, 1, "member reaped", "node=b", "status=failed")
}

func TestUnreadableMetaShowsMemberWithoutMeta(t *testing.T) {
	a := newMember(t, "a")

	mc := memberlist.DefaultLocalConfig()
	mc.Name = "stranger"
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Logger = log.New(io.Discard, "", 0)
	mc.Delegate = rawMeta("\x00not json")
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	if _, err := ml.Join([]string{a.addr()}); err != nil {
		t.Fatal(err)
	}

	ms := waitStatus(t, a, StatusAlive, "stranger")
	if got, _ := find(ms, "stranger"); got.Meta != (Meta{}) {
		t.Errorf("stranger's Meta = %+v, want empty", got.Meta)
	}
	a.logs.wait(t, 1, "level=WARN", "unreadable", "node=stranger")
}

// rawMeta is a memberlist delegate that advertises the given meta.
type rawMeta string

func (r rawMeta) NodeMeta(int) []byte               { return []byte(r) }
func (rawMeta) NotifyMsg([]byte)                    {}
func (rawMeta) GetBroadcasts(int, int) [][]byte     { return nil }
func (rawMeta) LocalState(bool) []byte              { return nil }
func (rawMeta) MergeRemoteState(buf []byte, _ bool) {}

func TestJoinAndShutdownErrors(t *testing.T) {
	a := newMember(t, "a")
	if _, err := a.Join(nil); err == nil || err.Error() != "join: no address given" {
		t.Errorf("Join(nil) = %v", err)
	}
	if err := a.RetryJoin(context.Background(), nil); err == nil || err.Error() != "retry-join: no address given" {
		t.Errorf("RetryJoin(nil) = %v", err)
	}
	if _, err := a.Join([]string{"127.0.0.1:99999"}); err == nil || err.Error() != `join "127.0.0.1:99999": port "99999" is not a port (1-65535)` {
		t.Errorf("Join(bad port) = %v", err)
	}
	a.Shutdown()
	if _, err := a.Join([]string{"127.0.0.1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown = %v, want ErrShutdown", err)
	}
	if err := a.RetryJoin(context.Background(), []string{"127.0.0.1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("RetryJoin after Shutdown = %v, want ErrShutdown", err)
	}
}

// Prune is force-leave -prune: the failed member is forced out and
// forgotten at once, not after ReapFailedAfter; a live one stays.
func TestPrune(t *testing.T) {
	a, _, c := cluster3(t)
	if err := a.Prune("b"); !errors.Is(err, ErrNotFailed) {
		t.Errorf("Prune(b) of a live member = %v, want ErrNotFailed", err)
	}
	c.Shutdown()
	waitStatus(t, a, StatusFailed, "c")
	if err := a.Prune("c"); err != nil {
		t.Fatalf("Prune(c) = %v", err)
	}
	waitMembers(t, a, "c pruned", func(ms []Member) bool { _, ok := find(ms, "c"); return !ok })
	if _, ok := find(second(a.Members(nil)), "b"); !ok {
		t.Error("b is gone after pruning c")
	}
}
