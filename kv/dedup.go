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
type appliedWrites struct {
	mu    sync.Mutex
	byID  map[string]*appliedWrite
	order []string // oldest first
}

func newAppliedWrites() *appliedWrites {
	return &appliedWrites{byID: map[string]*appliedWrite{}}
}

func (a *appliedWrites) get(id string) (*appliedWrite, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.byID[id]
	return w, ok
}

// add records the result res of the write id at index.
func (a *appliedWrites) add(id string, index uint64, res any) {
	w := &appliedWrite{ID: id, Index: index}
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
	a.mu.Lock()
	defer a.mu.Unlock()
	a.insert(w)
}

func (a *appliedWrites) insert(w *appliedWrite) {
	if _, ok := a.byID[w.ID]; ok {
		return
	}
	a.byID[w.ID] = w
	a.order = append(a.order, w.ID)
	for len(a.order) > appliedWindow {
		delete(a.byID, a.order[0])
		a.order = a.order[1:]
	}
	if cap(a.order) > 4*appliedWindow {
		a.order = append([]string(nil), a.order...)
	}
}

// list returns the records, oldest first, for a snapshot.
func (a *appliedWrites) list() []*appliedWrite {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*appliedWrite, 0, len(a.order))
	for _, id := range a.order {
		out = append(out, a.byID[id])
	}
	return out
}

// replace sets the records from a snapshot.
func (a *appliedWrites) replace(ws []*appliedWrite) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byID = map[string]*appliedWrite{}
	a.order = nil
	for _, w := range ws {
		a.insert(w)
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
