package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/cairn-dev/cairn/kv"
)

// The operator's requests that only the Raft leader can carry out: a
// snapshot of the replicated state (taken where the writes are, as
// Consul's Snapshot endpoint forwards to the leader), its restore, and
// changes to the Raft configuration. Any agent takes them; a client or a
// follower forwards them. The Raft changes are held (tried again while
// there is no leader, as after a transfer); snapshots are sent once,
// since each can take long and the operator sees the error and decides.
const (
	mSnapshotSave    = "snapshot-save"
	mSnapshotRestore = "snapshot-restore"
	mRaftRemovePeer  = "raft-remove-peer"
	mRaftTransfer    = "raft-transfer-leader"
)

// Snapshot takes a snapshot of the state on the leader and returns its
// meta and its state, which the caller must close. Forwarded, the state
// travels whole in the answer.
func (r *Router) Snapshot(ctx context.Context) (kv.SnapshotMeta, io.ReadCloser, error) {
	return r.snapshot(ctx, 0)
}

func (r *Router) snapshot(ctx context.Context, hops int) (kv.SnapshotMeta, io.ReadCloser, error) {
	resp, fwd, err := r.forward(ctx, false, Request{Method: mSnapshotSave, Hops: hops})
	if err != nil {
		return kv.SnapshotMeta{}, nil, err
	}
	if !fwd {
		return r.local.Snapshot()
	}
	return resp.SnapshotMeta, io.NopCloser(bytes.NewReader(resp.Data)), nil
}

// Restore replaces the leader's state with state.
func (r *Router) Restore(ctx context.Context, meta kv.SnapshotMeta, state []byte) error {
	return r.restore(ctx, 0, meta, state)
}

func (r *Router) restore(ctx context.Context, hops int, meta kv.SnapshotMeta, state []byte) error {
	_, fwd, err := r.forward(ctx, false, Request{Method: mSnapshotRestore, Hops: hops, SnapshotMeta: meta, Data: state})
	if err != nil || fwd {
		return err
	}
	return r.local.Restore(ctx, meta, bytes.NewReader(state))
}

// RemovePeer takes the server with Raft ID id, or at Raft address
// address, out of the Raft configuration.
//
// It is held like a write: when a try may have removed the server (the
// leader lost its leadership while committing the change) and the next
// finds it gone, that is success.
func (r *Router) RemovePeer(ctx context.Context, id, address string) error {
	mayHaveRemoved := false
	return r.holdRequest(ctx, holdRead, 0, func(ctx context.Context) error {
		err := r.removePeer(ctx, 0, id, address)
		absent := err != nil && strings.Contains(err.Error(), notAPeer)
		if absent && mayHaveRemoved {
			return nil
		}
		if removalMayHaveHappened(err) {
			mayHaveRemoved = true
		}
		return err
	})
}

// removalMayHaveHappened reports whether a try that failed with err may
// have reached a leader that committed the removal: its answer was lost,
// or the leader lost its leadership while committing. A try that found
// no leader, or a server that was not one, removed nothing, so a server
// absent after it was never there (removing an unknown ID is an error,
// even when the first try met an election).
func removalMayHaveHappened(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, kv.ErrOutcomeUnknown), errors.Is(err, ErrConnectionLost),
		errors.Is(err, errAttemptTimeout), errors.Is(err, errLeaderChanged):
		return true
	}
	return false
}

// notAPeer is in the error of a removal of a server that is not in the
// configuration (it survives being forwarded, as text).
const notAPeer = "in the Raft configuration; see cairn operator raft list-peers"

// raftLeadership maps Raft's lost-leadership errors to kv.ErrNotLeader,
// which the hold tries again with the new leader.
func raftLeadership(err error) error {
	if errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %v", kv.ErrNotLeader, err)
	}
	return err
}

func (r *Router) removePeer(ctx context.Context, hops int, id, address string) error {
	_, fwd, err := r.forward(ctx, false, Request{Method: mRaftRemovePeer, Hops: hops, ID: id, Key: address})
	if err != nil || fwd {
		return err
	}
	peers, err := r.local.Configuration()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if (id != "" && p.ID == id) || (address != "" && p.Address == address) {
			err := r.local.RemoveServer(p.ID)
			if errors.Is(err, raft.ErrLeadershipLost) {
				// The change was appended and may yet commit.
				return fmt.Errorf("%w: %v", kv.ErrOutcomeUnknown, err)
			}
			return raftLeadership(err)
		}
	}
	if id != "" {
		return fmt.Errorf("%w: no server with ID %q %s", kv.ErrInvalidRequest, id, notAPeer)
	}
	return fmt.Errorf("%w: no server at address %q %s", kv.ErrInvalidRequest, address, notAPeer)
}

// TransferLeader hands leadership to the server with Raft ID id, or to
// the most up-to-date follower when id is "".
func (r *Router) TransferLeader(ctx context.Context, id string) error {
	return r.holdRequest(ctx, holdRead, 0, func(ctx context.Context) error {
		return r.transferLeader(ctx, 0, id)
	})
}

func (r *Router) transferLeader(ctx context.Context, hops int, id string) error {
	_, fwd, err := r.forward(ctx, false, Request{Method: mRaftTransfer, Hops: hops, ID: id})
	if errors.Is(err, errLeaderChanged) {
		// A follower forwarding to the leader stops waiting when the
		// leader changes: here that is the transfer having happened.
		return nil
	}
	if err != nil || fwd {
		return err
	}
	rf := r.local.Raft()
	if rf.State() != raft.Leader {
		return kv.ErrNotLeader
	}
	if id == "" {
		// Through the store: it ends its read lease for the term first.
		return r.local.TransferLeadership("", "")
	}
	peers, err := r.local.Configuration()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.ID == id {
			if !p.Voter {
				return fmt.Errorf("%w: server %q is not a voter and cannot lead", kv.ErrInvalidRequest, id)
			}
			return r.local.TransferLeadership(p.ID, p.Address)
		}
	}
	return fmt.Errorf("%w: no server with ID %q in the Raft configuration; see cairn operator raft list-peers", kv.ErrInvalidRequest, id)
}

// serveOperator runs the operator's forwarded requests on this server;
// ok is false for a method that is not one of them.
func (r *Router) serveOperator(ctx context.Context, req *Request, resp *Response) (ok bool, err error) {
	switch req.Method {
	case mSnapshotSave:
		meta, state, err := r.snapshot(ctx, req.Hops)
		if err != nil {
			return true, err
		}
		defer state.Close()
		resp.SnapshotMeta = meta
		resp.Data, err = io.ReadAll(state)
		return true, err
	case mSnapshotRestore:
		return true, r.restore(ctx, req.Hops, req.SnapshotMeta, req.Data)
	case mRaftRemovePeer:
		return true, r.removePeer(ctx, req.Hops, req.ID, req.Key)
	case mRaftTransfer:
		return true, r.transferLeader(ctx, req.Hops, req.ID)
	}
	return false, nil
}
