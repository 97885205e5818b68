package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// cmdType names what a Raft log entry does.
type cmdType uint8

const (
	cmdKV cmdType = iota + 1
	cmdTxn
	cmdSessionCreate
	cmdSessionDestroy
	cmdTombstoneReap
)

// command is one Raft log entry. JSON keeps the log readable with bolt
// tools and forwards-compatible (unknown fields are ignored); codec.go
// writes and reads KV writes' JSON without reflection.
type command struct {
	Type    cmdType
	Op      *Op      `json:",omitempty"`
	Ops     []Op     `json:",omitempty"`
	Session *Session `json:",omitempty"`
	ID      string   `json:",omitempty"`
	Index   uint64   `json:",omitempty"`
	// WriteID names the logical write (see WithWriteID): a command
	// whose WriteID was applied before answers the first result and
	// changes nothing, so a write sent again is applied at most once.
	WriteID string `json:",omitempty"`
}

// fsm applies committed Raft entries to the State. raft calls ApplyBatch
// (fsm is a raft.BatchingFSM), Snapshot and Restore from its own
// goroutine, one at a time; reads go to state() from any goroutine.
type fsm struct {
	log       *slog.Logger
	st        atomic.Pointer[State]
	lockDelay *lockDelays
	applied   *appliedWrites
}

func newFSM(log *slog.Logger) *fsm {
	f := &fsm{log: log, lockDelay: newLockDelays(), applied: newAppliedWrites()}
	f.st.Store(newState())
	return f
}

func (f *fsm) state() *State { return f.st.Load() }

// ApplyBatch applies the entries one Raft commit made ready, in log
// order, with the results Apply would give each. Consecutive KV writes
// share one memdb transaction (see kvBatch): under concurrent writers a
// commit holds many, and the state machine applies them all with one
// copy of the tree paths they share and one wake-up of the watchers,
// instead of one each. Readers see the whole batch at once, before raft
// answers any of its writers. Every server applies the same entries to
// the same state whatever its batches are, so the states stay equal.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	b := f.state().kvBatch()
	for i, l := range logs {
		out[i] = f.applyLog(l, b)
	}
	b.commit()
	return out
}

// Apply applies one entry as a batch of one.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// applyLog returns, per command type: bool or error (KV), txnResponse
// (txn), the new session's ID or an error (session create), nil or error
// (session destroy, reaping). A command with a WriteID seen before
// returns the first result and changes nothing. Write IDs are recorded
// in log order as each entry is applied, before b commits: only the
// FSM's goroutine reads them.
func (f *fsm) applyLog(l *raft.Log, b *kvBatch) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		// A committed entry this version cannot read is not recoverable
		// by skipping it silently: the states of servers would diverge.
		panic(fmt.Sprintf("kv: raft entry %d is not a command this version understands: %v", l.Index, err))
	}
	if c.WriteID == "" {
		return f.apply(l.Index, &c, b)
	}
	if w, ok := f.applied.get(c.WriteID); ok {
		return w.result(c.Type)
	}
	res := f.apply(l.Index, &c, b)
	f.applied.add(c.WriteID, l.Index, res)
	return res
}

// apply runs one command: a KV write in b, anything else in its own
// transaction once b's writes are committed.
func (f *fsm) apply(index uint64, c *command, b *kvBatch) any {
	if c.Type == cmdKV {
		ok, err := b.apply(index, c.Op)
		if err != nil {
			return err
		}
		return ok
	}
	b.commit()
	st := f.state()
	switch c.Type {
	case cmdTxn:
		return st.applyTxn(index, c.Ops)
	case cmdSessionCreate:
		if err := st.createSession(index, c.Session); err != nil {
			return err
		}
		return c.Session.ID
	case cmdSessionDestroy:
		return st.destroySession(index, c.ID, f.lockDelay, time.Now())
	case cmdTombstoneReap:
		return st.reapTombstones(c.Index)
	}
	panic(fmt.Sprintf("kv: raft entry %d has unknown command type %d", index, c.Type))
}

// Snapshot captures the state now; Persist writes it out later, off the
// apply path, while memdb's immutable trees keep the capture intact.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.state().snapshot(), applied: f.applied.list()}, nil
}

// Restore replaces the state with a snapshot and wakes every reader of
// the old one so blocking queries re-read.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var snap snapshot
	dec := json.NewDecoder(rc)
	if err := dec.Decode(&snap); err != nil {
		return fmt.Errorf("kv: decode snapshot: %w", err)
	}
	// The remembered write IDs follow the state; snapshots written
	// before there were any end here.
	var applied []*appliedWrite
	if err := dec.Decode(&applied); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("kv: decode snapshot's write IDs: %w", err)
	}
	st, err := restoreState(&snap)
	if err != nil {
		return fmt.Errorf("kv: restore snapshot: %w", err)
	}
	f.applied.replace(applied)
	old := f.st.Swap(st)
	old.abandonNow()
	return nil
}

type fsmSnapshot struct {
	snap    *snapshot
	applied []*appliedWrite
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	enc := json.NewEncoder(sink)
	if err := errors.Join(enc.Encode(s.snap), enc.Encode(s.applied)); err != nil {
		sink.Cancel()
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
