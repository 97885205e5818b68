package servers

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
)

// fakeRaft records what the manager asked of Raft as text.
type fakeRaft struct {
	mu       *sync.Mutex // Run calls it from its own goroutine; nil in TestStep's single goroutine
	id       string
	leader   bool
	leaderCh chan struct{} // closed and replaced by setLeader
	peers    []kv.Peer
	calls    []string
	steps    int // HasState calls: one per step
}

func (f *fakeRaft) NodeID() string {
	defer f.lock()()
	return f.id
}
func (f *fakeRaft) IsLeader() bool {
	defer f.lock()()
	return f.leader
}
func (f *fakeRaft) LeaderWatch(ws memdb.WatchSet) bool {
	defer f.lock()()
	if f.leaderCh != nil {
		ws.Add(f.leaderCh)
	}
	return f.leader
}
func (f *fakeRaft) setLeader(l bool) {
	defer f.lock()()
	f.leader = l
	close(f.leaderCh)
	f.leaderCh = make(chan struct{})
}
func (f *fakeRaft) HasState() bool {
	defer f.lock()()
	f.steps++
	return len(f.peers) > 0
}
func (f *fakeRaft) BootstrapCluster(p []kv.Peer) error {
	defer f.lock()()
	var ids []string
	for _, x := range p {
		ids = append(ids, x.ID+"@"+x.Address)
	}
	f.calls = append(f.calls, "bootstrap "+strings.Join(ids, ","))
	f.peers = p
	return nil
}
func (f *fakeRaft) Configuration() ([]kv.Peer, error) {
	defer f.lock()()
	return f.peers, nil
}
func (f *fakeRaft) AddVoter(id, addr string) error {
	defer f.lock()()
	f.calls = append(f.calls, "add-voter "+id+"@"+addr)
	f.peers = append(f.peers, kv.Peer{ID: id, Address: addr, Voter: true})
	return nil
}
func (f *fakeRaft) RemoveServer(id string) error {
	defer f.lock()()
	f.calls = append(f.calls, "remove "+id)
	for i, p := range f.peers {
		if p.ID == id {
			f.peers = append(f.peers[:i], f.peers[i+1:]...)
			break
		}
	}
	return nil
}
func (f *fakeRaft) InvalidateNodeSessions(_ context.Context, node string) error {
	defer f.lock()()
	f.calls = append(f.calls, "end-sessions "+node)
	return nil
}

func srv(name string, st Status) Member {
	return Member{Name: name, ID: "id-" + name, RaftAddr: name + ":8300", Server: true, Status: st}
}

func voters(names ...string) []kv.Peer {
	var out []kv.Peer
	for _, n := range names {
		out = append(out, kv.Peer{ID: "id-" + n, Address: n + ":8300", Voter: true})
	}
	return out
}

func TestStep(t *testing.T) {
	t0 := time.Unix(1000, 0)
	timeout := time.Minute
	tests := []struct {
		name   string
		expect int
		raft   fakeRaft
		remote map[string]bool // raft addr -> has state
		rounds [][]Member      // memberships seen, one step each
		at     []time.Duration // time of each round after t0
		want   []string
	}{
		{
			name:   "bootstraps once the expected servers are seen",
			expect: 3,
			raft:   fakeRaft{id: "id-a"},
			rounds: [][]Member{
				{srv("a", StatusAlive), srv("b", StatusAlive)},
				{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusAlive), {Name: "client", ID: "id-client", Status: StatusAlive}},
			},
			want: []string{"bootstrap id-a@a:8300,id-b@b:8300,id-c@c:8300"},
		},
		{
			name:   "never bootstraps next to an existing group",
			expect: 3,
			raft:   fakeRaft{id: "id-a"},
			remote: map[string]bool{"c:8300": true},
			rounds: [][]Member{{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusAlive)}},
			want:   nil,
		},
		{
			name:   "without bootstrap-expect a server waits to be added",
			raft:   fakeRaft{id: "id-a"},
			rounds: [][]Member{{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusAlive)}},
			want:   nil,
		},
		{
			name:   "leader adds a joining server and removes one that left",
			raft:   fakeRaft{id: "id-a", leader: true, peers: voters("a", "b", "c")},
			rounds: [][]Member{{srv("a", StatusAlive), srv("b", StatusLeft), srv("c", StatusAlive), srv("d", StatusAlive)}},
			want:   []string{"add-voter id-d@d:8300", "remove id-b", "end-sessions b"},
		},
		{
			name: "leader removes a failed server after the timeout, and ends its sessions at once",
			raft: fakeRaft{id: "id-a", leader: true, peers: voters("a", "b", "c")},
			rounds: [][]Member{
				{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusFailed)},
				{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusFailed)},
				{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusFailed)},
			},
			at:   []time.Duration{0, timeout / 2, timeout},
			want: []string{"end-sessions c", "remove id-c"},
		},
		{
			name: "a failed server is kept when removing it would lose quorum",
			raft: fakeRaft{id: "id-a", leader: true, peers: voters("a", "b", "c")},
			rounds: [][]Member{
				{srv("a", StatusAlive), srv("b", StatusFailed), srv("c", StatusFailed)},
				{srv("a", StatusAlive), srv("b", StatusFailed), srv("c", StatusFailed)},
			},
			at:   []time.Duration{0, 2 * timeout},
			want: []string{"end-sessions b", "end-sessions c"},
		},
		{
			name:   "followers do nothing",
			raft:   fakeRaft{id: "id-b", peers: voters("a", "b")},
			rounds: [][]Member{{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusAlive), srv("x", StatusFailed)}},
			want:   nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hasState := func(_ context.Context, addr string) (bool, error) { return tc.remote[addr], nil }
			r := tc.raft
			m, err := New(Config{BootstrapExpect: tc.expect, FailedServerTimeout: timeout}, nil, &r, hasState)
			if err != nil {
				t.Fatal(err)
			}
			for i, round := range tc.rounds {
				at := t0
				if i < len(tc.at) {
					at = t0.Add(tc.at[i])
				}
				m.step(context.Background(), round, at)
			}
			got := append([]string(nil), r.calls...)
			sortTail(got)
			want := append([]string(nil), tc.want...)
			sortTail(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("raft calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// sortTail orders calls made in one round whose order is map order.
func sortTail(s []string) { sort.Strings(s) }

func TestNewRejectsNegativeExpect(t *testing.T) {
	_, err := New(Config{BootstrapExpect: -1}, nil, &fakeRaft{}, nil)
	if err == nil || !strings.Contains(err.Error(), "-bootstrap-expect=-1 is negative") {
		t.Fatalf("New(-1) = %v", err)
	}
}

// fakeMembers is a membership that never changes.
type fakeMembers struct{ ms []Member }

// lock locks f.mu, if f has one, and returns its unlock.
func (f *fakeRaft) lock() func() {
	if f.mu == nil {
		return func() {}
	}
	f.mu.Lock()
	return f.mu.Unlock
}

// state is what the manager has done so far.
func (f *fakeRaft) state() (steps int, calls []string) {
	defer f.lock()()
	return f.steps, slices.Clone(f.calls)
}

func (f *fakeMembers) Members(ws memdb.WatchSet) (uint64, []Member) {
	ws.Add(make(chan struct{})) // never closes: membership stays as it is
	return 1, f.ms
}

// TestRunWaitsOnSignals: Run polls nothing. A follower with nothing to do
// sleeps through a day; it reconciles the moment it gains leadership (the
// kv leadership signal), and removes a failed server when its timeout
// runs out, with no other change to wake it. The clock is synctest's, so
// the day takes no time.
func TestRunWaitsOnSignals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		members := &fakeMembers{ms: []Member{srv("a", StatusAlive), srv("b", StatusAlive), srv("c", StatusFailed)}}
		r := &fakeRaft{mu: new(sync.Mutex), id: "id-a", peers: voters("a", "b", "c"), leaderCh: make(chan struct{})}
		m, err := New(Config{FailedServerTimeout: time.Hour}, members, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		synctest.Wait()
		if steps, calls := r.state(); steps != 1 || calls != nil {
			t.Fatalf("a follower at start: %d steps, calls %q; want 1 step and no calls", steps, calls)
		}

		time.Sleep(24 * time.Hour) // synctest's clock: no real time passes
		synctest.Wait()
		if steps, _ := r.state(); steps != 1 {
			t.Fatalf("a follower with nothing changing stepped %d times in a day; want 1 (no polling)", steps)
		}

		start := time.Now()
		r.setLeader(true)
		synctest.Wait()
		if steps, calls := r.state(); steps != 2 || !slices.Equal(calls, []string{"end-sessions c"}) {
			t.Fatalf("on gaining leadership: %d steps, calls %q; want 2 steps and [end-sessions c]", steps, calls)
		}

		time.Sleep(time.Hour) // FailedServerTimeout from when the leader first saw c failed
		synctest.Wait()
		if _, calls := r.state(); !slices.Equal(calls, []string{"end-sessions c", "remove id-c"}) {
			t.Fatalf("after FailedServerTimeout: calls %q; want [end-sessions c remove id-c]", calls)
		}
		if d := time.Since(start); d != time.Hour {
			t.Errorf("failed server removed %v after the leader saw it; want exactly FailedServerTimeout (1h)", d)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}
