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
// tools and forwards-compatible (unknown fields are ignored).
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

func (c command) encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode command: %w", err)
	}
	return b, nil
}

// fsm applies committed Raft entries to the State. raft calls Apply,
// Snapshot and Restore from its own goroutine, one at a time; reads go to
// state() from any goroutine.
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

// Apply returns, per command type: bool or error (KV), txnResponse (txn),
// the new session's ID or an error (session create), nil or error
// (session destroy, reaping). A command with a WriteID seen before
// returns the first result and changes nothing.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		// A committed entry this version cannot read is not recoverable
		// by skipping it silently: the states of servers would diverge.
		panic(fmt.Sprintf("kv: raft entry %d is not a command this version understands: %v", l.Index, err))
	}
	if c.WriteID == "" {
		return f.apply(l.Index, &c)
	}
	if w, ok := f.applied.get(c.WriteID); ok {
		return w.result(c.Type)
	}
	res := f.apply(l.Index, &c)
	f.applied.add(c.WriteID, l.Index, res)
	return res
}

func (f *fsm) apply(index uint64, c *command) any {
	st := f.state()
	switch c.Type {
	case cmdKV:
		ok, err := st.applyKV(index, c.Op)
		if err != nil {
			return err
		}
		return ok
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
