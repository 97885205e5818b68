package servers

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/go-cmp/cmp"
)

// fakeRaft records what the manager asked of Raft as text.
type fakeRaft struct {
	id     string
	leader bool
	peers  []kv.Peer
	calls  []string
}

func (f *fakeRaft) NodeID() string { return f.id }
func (f *fakeRaft) IsLeader() bool { return f.leader }
func (f *fakeRaft) HasState() bool { return len(f.peers) > 0 }
func (f *fakeRaft) BootstrapCluster(p []kv.Peer) error {
	var ids []string
	for _, x := range p {
		ids = append(ids, x.ID+"@"+x.Address)
	}
	f.calls = append(f.calls, "bootstrap "+strings.Join(ids, ","))
	f.peers = p
	return nil
}
func (f *fakeRaft) Configuration() ([]kv.Peer, error) { return f.peers, nil }
func (f *fakeRaft) AddVoter(id, addr string) error {
	f.calls = append(f.calls, "add-voter "+id+"@"+addr)
	f.peers = append(f.peers, kv.Peer{ID: id, Address: addr, Voter: true})
	return nil
}
func (f *fakeRaft) RemoveServer(id string) error {
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
