package kv

import (
	"errors"
	"fmt"
	"sync"
)

// appliedWindow is how many write IDs the state machine remembers. A
// write is sent again within its caller's hold time (seconds); this many
// writes take far longer than that at any rate the store sustains.
const appliedWindow = 1 << 16

// appliedWrite is the result of one write with an ID, in a form that
// survives a snapshot.
type appliedWrite struct {
	ID    string
	Index uint64
	// One of these is the result, by the command's type.
	OK        bool         `json:",omitempty"`
	Err       string       `json:",omitempty"`
	Invalid   bool         `json:",omitempty"` // Err wraps ErrInvalidRequest
	Txn       *txnResponse `json:",omitempty"`
	SessionID string       `json:",omitempty"`
}

// result turns the record back into what fsm.Apply returned the first time.
func (a *appliedWrite) result(t cmdType) any {
	if a.Err != "" {
		if a.Invalid {
			return fmt.Errorf("%w: %s", ErrInvalidRequest, a.Err)
		}
		return errors.New(a.Err)
	}
	switch t {
	case cmdKV:
		return a.OK
	case cmdTxn:
		if a.Txn != nil {
			return *a.Txn
		}
	case cmdSessionCreate:
		return a.SessionID
	}
	return nil
}

// appliedWrites remembers the last appliedWindow write IDs and their
// results. Apply adds in log order on every server alike, and the window
// is counted in entries, so every server forgets the same IDs at the
// same point and answers a repeat the same way.
//
// The record holds no pointers for the common write (an ID cairn made,
// a bool result): 65,536 records of strings and structs were half of
// what the garbage collector marked on a server under a write load, and
// its cost per write grows with what it marks.
type appliedWrites struct {
	mu    sync.Mutex
	ring  []appliedEntry // grows to appliedWindow entries, then wraps
	next  int            // the slot the next write takes; once full, the oldest
	slots map[inlineID]int32
	// The rare rest: IDs too long to keep inline, and results other
	// than a bool (errors, transactions, sessions), by ring slot.
	long map[string]int32
	rich map[int32]*appliedWrite
}

// maxInlineID is the longest write ID kept in place. cairn's own are at
// most 38 bytes (16 hex digits, "-w", a decimal sequence number).
const maxInlineID = 39

// inlineID is a write ID kept in place, not behind a pointer.
type inlineID struct {
	n uint8
	b [maxInlineID]byte
}

func toInline(id string) (inlineID, bool) {
	var k inlineID
	if len(id) > maxInlineID {
		return k, false
	}
	k.n = uint8(len(id))
	copy(k.b[:], id)
	return k, true
}

func (k *inlineID) String() string { return string(k.b[:k.n]) }

// appliedEntry is one remembered write. With rich set, the whole record
// (ID included, for a long one) is in appliedWrites.rich.
type appliedEntry struct {
	id    inlineID
	index uint64
	ok    bool
	rich  bool
}

func newAppliedWrites() *appliedWrites {
	a := &appliedWrites{}
	a.replace(nil)
	return a
}

// slot finds id's ring slot.
func (a *appliedWrites) slot(id string) (int32, bool) {
	if k, ok := toInline(id); ok {
		s, found := a.slots[k]
		return s, found
	}
	s, found := a.long[id]
	return s, found
}

func (a *appliedWrites) get(id string) (appliedWrite, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.slot(id)
	if !ok {
		return appliedWrite{}, false
	}
	return a.record(s), true
}

// record rebuilds the record in slot s.
func (a *appliedWrites) record(s int32) appliedWrite {
	e := &a.ring[s]
	if e.rich {
		return *a.rich[s]
	}
	return appliedWrite{ID: e.id.String(), Index: e.index, OK: e.ok}
}

// add records the result res of the write id at index.
func (a *appliedWrites) add(id string, index uint64, res any) {
	w := newAppliedWrite(id, index, res)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.insert(w)
}

// newAppliedWrite is the record of the result res of the write id.
func newAppliedWrite(id string, index uint64, res any) appliedWrite {
	w := appliedWrite{ID: id, Index: index}
	switch r := res.(type) {
	case bool:
		w.OK = r
	case error:
		w.Err = r.Error()
		if errors.Is(r, ErrInvalidRequest) {
			w.Invalid = true
			w.Err = errorsTrimPrefix(r)
		}
	case txnResponse:
		w.Txn = &r
	case string:
		w.SessionID = r
	}
	return w
}

// insert records w; a repeat of an ID recorded keeps the first.
func (a *appliedWrites) insert(w appliedWrite) {
	if _, ok := a.slot(w.ID); ok {
		return
	}
	var s int32
	if len(a.ring) < appliedWindow {
		s = int32(len(a.ring))
		a.ring = append(a.ring, appliedEntry{})
	} else {
		s = int32(a.next)
		a.evict(s)
	}
	a.next = (int(s) + 1) % appliedWindow
	k, inline := toInline(w.ID)
	e := appliedEntry{id: k, index: w.Index, ok: w.OK}
	e.rich = !inline || w.Err != "" || w.Invalid || w.Txn != nil || w.SessionID != ""
	a.ring[s] = e
	if inline {
		a.slots[k] = s
	} else {
		a.long[w.ID] = s
	}
	if e.rich {
		r := w
		a.rich[s] = &r
	}
}

// evict forgets the write in slot s.
func (a *appliedWrites) evict(s int32) {
	e := &a.ring[s]
	if e.rich {
		id := a.rich[s].ID
		delete(a.rich, s)
		if len(id) > maxInlineID {
			delete(a.long, id)
			return
		}
	}
	delete(a.slots, e.id)
}

// list returns the records, oldest first, for a snapshot.
func (a *appliedWrites) list() []*appliedWrite {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*appliedWrite, 0, len(a.ring))
	first := 0
	if len(a.ring) == appliedWindow {
		first = a.next
	}
	for i := range a.ring {
		w := a.record(int32((first + i) % len(a.ring)))
		out = append(out, &w)
	}
	return out
}

// replace sets the records from a snapshot.
func (a *appliedWrites) replace(ws []*appliedWrite) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ring, a.next = nil, 0
	a.slots, a.long, a.rich = map[inlineID]int32{}, map[string]int32{}, map[int32]*appliedWrite{}
	for _, w := range ws {
		a.insert(*w)
	}
}

// errorsTrimPrefix is the text of an ErrInvalidRequest error without the
// sentinel's own words, which result puts back.
func errorsTrimPrefix(err error) string {
	msg := err.Error()
	p := ErrInvalidRequest.Error() + ": "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}
