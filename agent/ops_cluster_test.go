package agent

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// saveSnapshot saves a snapshot through c.
func saveSnapshot(t *testing.T, c *api.Client, via string) []byte {
	t.Helper()
	snap, qm, err := c.Snapshot().Save(nil)
	if err != nil {
		t.Fatalf("Snapshot().Save through %s: %v", via, err)
	}
	defer snap.Close()
	b, err := io.ReadAll(snap)
	if err != nil {
		t.Fatalf("read the snapshot saved through %s: %v", via, err)
	}
	if qm.LastIndex == 0 {
		t.Errorf("Save through %s: LastIndex 0", via)
	}
	return b
}

// kvDump is every key with its value, session and flags, for comparing
// two stores.
func kvDump(t *testing.T, c *api.Client) []string {
	t.Helper()
	pairs, _, err := c.KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A listing of the root leaves cairn's own keys out; they are asked for.
	internal, _, err := c.KV().List("_cairn/", nil)
	if err != nil {
		t.Fatal(err)
	}
	pairs = append(internal, pairs...)
	var out []string
	for _, p := range pairs {
		if strings.HasPrefix(p.Key, GossipKeyPrefix) {
			// Each agent binds its own gossip key when it can reach a
			// leader, so these come and go with timing (and a restore
			// into another cluster carries the first cluster's).
			continue
		}
		out = append(out, fmt.Sprintf("%s=%q flags=%d session=%s", p.Key, p.Value, p.Flags, p.Session))
	}
	return out
}

// TestOperatorRequestsReachTheLeaderFromAnyAgent: on 3 servers and a
// client, snapshot save and restore and the Raft changes work through
// the client and through a follower (forwarded to the leader, as
// Consul's are); a snapshot restored into another cluster (through its
// client) keeps every key, session, prepared query and VIP table entry
// (and ACL entry: TestACLSnapshotRoundTrip).
func TestOperatorRequestsReachTheLeaderFromAnyAgent(t *testing.T) {
	c := startCluster(t, 3, 1)
	client := c.clients[0].client
	leader := leaderOf(t, c)
	var followers []*running
	for _, s := range c.servers {
		if s != leader {
			followers = append(followers, s)
		}
	}

	// State of every kind, written through the client.
	for i := range 20 {
		if _, err := client.KV().Put(&api.KVPair{Key: fmt.Sprintf("app/%02d", i), Value: []byte(fmt.Sprint(i)), Flags: uint64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]string{
		// ACL tokens and policies live beside these, under _cairn/acl/
		// (TestACLSnapshotRoundTrip restores them into another cluster).
		"_cairn/vip/service/web": `{"Addr":"10.200.0.5"}`, // as agent/vip's table writes it
	} {
		if _, err := client.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	sess, _, err := client.Session().Create(&api.SessionEntry{Name: "held", TTL: "120s", Behavior: api.SessionBehaviorRelease}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := client.KV().Acquire(&api.KVPair{Key: "lock/leader", Value: []byte("me"), Session: sess}, nil); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	queryID, _, err := client.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: "web-near", Service: api.ServiceQuery{Service: "web", OnlyPassing: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := kvDump(t, client)

	// Save through the client and through a follower: both are the
	// leader's state.
	viaClient := saveSnapshot(t, client, "the client")
	viaFollower := saveSnapshot(t, followers[0].client, "a follower")
	if len(viaFollower) == 0 || len(viaClient) == 0 {
		t.Fatal("empty snapshot")
	}

	// Restore through a follower: a write made after the snapshot is gone.
	if _, err := client.KV().Put(&api.KVPair{Key: "after-snapshot", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := followers[1].client.Snapshot().Restore(nil, bytes.NewReader(viaFollower)); err != nil {
		t.Fatalf("Snapshot().Restore through a follower: %v", err)
	}
	eventually(t, "the restored state on the client", 10*time.Second, func() (bool, string) {
		got := kvDump(t, client)
		return slices.Equal(got, want), fmt.Sprintf("%d keys, want %d", len(got), len(want))
	})

	// Into another cluster, through its client.
	other := startCluster(t, 1, 1)
	oc := other.clients[0].client
	if err := oc.Snapshot().Restore(nil, bytes.NewReader(viaClient)); err != nil {
		t.Fatalf("Snapshot().Restore through the other cluster's client: %v", err)
	}
	if got := kvDump(t, oc); !slices.Equal(got, want) {
		t.Errorf("the other cluster after the restore has\n%v\nwant\n%v", got, want)
	}
	se, _, err := oc.Session().Info(sess, nil)
	if err != nil || se == nil || se.Name != "held" {
		t.Errorf("restored session %s = %+v, %v", sess, se, err)
	}
	qs, _, err := oc.PreparedQuery().Get(queryID, nil)
	if err != nil || len(qs) != 1 || qs[0].Name != "web-near" || qs[0].Service.Service != "web" || !qs[0].Service.OnlyPassing {
		t.Errorf("restored prepared query %s = %+v, %v", queryID, qs, err)
	}

	// Raft changes through the client and through a follower.
	target := followers[0]
	resp, err := client.Operator().RaftLeaderTransfer(target.NodeID(), nil)
	if err != nil || !resp.Success {
		t.Fatalf("RaftLeaderTransfer(%s) through the client = %+v, %v", target.NodeID(), resp, err)
	}
	eventually(t, "the named server leads", 10*time.Second, func() (bool, string) {
		l, err := client.Status().Leader()
		return l == target.ServerAddr(), fmt.Sprintf("leader %q, %v", l, err)
	})
	// The old leader is a follower now; remove the third server through it.
	gone := followers[1]
	if err := leader.client.Operator().RaftRemovePeerByID(gone.NodeID(), nil); err != nil {
		t.Fatalf("RaftRemovePeerByID through a follower: %v", err)
	}
	eventually(t, "the removed server is out of the configuration", 10*time.Second, func() (bool, string) {
		cfg, err := client.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return false, err.Error()
		}
		var ids []string
		for _, s := range cfg.Servers {
			ids = append(ids, s.ID)
		}
		return len(ids) == 2 && !slices.Contains(ids, gone.NodeID()), fmt.Sprint(ids)
	})
	if err := client.Operator().RaftRemovePeerByID("nope", nil); err == nil {
		t.Error("removing an unknown peer through the client succeeded")
	}
}
