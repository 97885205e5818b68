package kv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// heldTransport answers each heartbeat only when the test releases it,
// with the answer the test gives.
type heldTransport struct {
	raft.Transport // only the methods below are used
	sent           chan raft.ServerID
	answers        map[raft.ServerID]chan raft.AppendEntriesResponse
}

func newHeldTransport(peers ...raft.ServerID) *heldTransport {
	t := &heldTransport{sent: make(chan raft.ServerID, 16), answers: map[raft.ServerID]chan raft.AppendEntriesResponse{}}
	for _, p := range peers {
		t.answers[p] = make(chan raft.AppendEntriesResponse)
	}
	return t
}

func (t *heldTransport) LocalAddr() raft.ServerAddress { return "self:1" }
func (t *heldTransport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}
func (t *heldTransport) AppendEntries(id raft.ServerID, _ raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.sent <- id
	*resp = <-t.answers[id]
	return nil
}

// TestConfirmCountsOnlyHeartbeatsSentAfterTheRead: a reply to a
// heartbeat that was out before a read began does not confirm that
// read (hashicorp/raft's VerifyLeader counts it: a stalled leader then
// confirms itself with replies its followers gave before electing
// another). The read waits for a heartbeat sent after it, and a peer at
// a higher term refuses it.
func TestConfirmCountsOnlyHeartbeatsSentAfterTheRead(t *testing.T) {
	tr := newHeldTransport("b", "c")
	c := newConfirmer(tr, "a", 5)
	defer c.stop()
	cfg := raft.Configuration{Servers: []raft.Server{
		{ID: "a", Address: "self:1", Suffrage: raft.Voter},
		{ID: "b", Address: "b:1", Suffrage: raft.Voter},
		{ID: "c", Address: "c:1", Suffrage: raft.Voter},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expectSent := func(want ...raft.ServerID) {
		t.Helper()
		got := map[raft.ServerID]bool{}
		for range want {
			select {
			case id := <-tr.sent:
				got[id] = true
			case <-ctx.Done():
				t.Fatalf("heartbeats sent: %v; want %v", got, want)
			}
		}
		for _, id := range want {
			if !got[id] {
				t.Fatalf("heartbeats sent to %v; want %v", got, want)
			}
		}
	}

	first := make(chan error, 1)
	go func() { first <- c.confirm(ctx, cfg) }()
	expectSent("b", "c") // both out, for the first read

	second := make(chan error, 1)
	go func() { second <- c.confirm(ctx, cfg) }()
	// The second read began while both heartbeats were out. b accepts
	// the old one: that confirms the first read only.
	tr.answers["b"] <- raft.AppendEntriesResponse{Term: 5, Success: true}
	if err := <-first; err != nil {
		t.Fatalf("first read: %v; want confirmed by b's reply", err)
	}
	expectSent("b") // a new one for the second read
	select {
	case err := <-second:
		t.Fatalf("second read answered %v by a reply to a heartbeat sent before it began; want it to wait", err)
	default:
	}
	// Meanwhile b and c elected another leader: the new heartbeat
	// meets term 6.
	tr.answers["b"] <- raft.AppendEntriesResponse{Term: 6}
	tr.answers["c"] <- raft.AppendEntriesResponse{Term: 5, Success: true} // c's old reply: does not count either
	if err := <-second; !errors.Is(err, ErrNotLeader) {
		t.Fatalf("second read: %v; want ErrNotLeader (a peer is at a higher term)", err)
	}
	// The heartbeat re-sent to c for the second read is still out.
	expectSent("c")
	c.stop()
	tr.answers["c"] <- raft.AppendEntriesResponse{Term: 6}
}
