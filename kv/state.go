package kv

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Table names of the in-memory schema.
const (
	tableKVs        = "kvs"
	tableTombstones = "tombstones"
	tableSessions   = "sessions"
	tableIndex      = "index"
)

// tombstone remembers the index at which a key was deleted, so a blocking
// prefix query wakes and answers a higher index after a delete (Consul's
// graveyard). The leader reaps old tombstones.
type tombstone struct {
	Key   string
	Index uint64
}

// indexEntry is the last index that changed a table.
type indexEntry struct {
	Key   string
	Value uint64
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableKVs: {Name: tableKVs, Indexes: map[string]*memdb.IndexSchema{
			"id":      {Name: "id", Unique: true, Indexer: stringIndex[Entry]{func(e *Entry) string { return e.Key }}},
			"session": {Name: "session", AllowMissing: true, Indexer: stringIndex[Entry]{func(e *Entry) string { return e.Session }}},
		}},
		tableTombstones: {Name: tableTombstones, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringIndex[tombstone]{func(t *tombstone) string { return t.Key }}},
		}},
		tableSessions: {Name: tableSessions, Indexes: map[string]*memdb.IndexSchema{
			"id":   {Name: "id", Unique: true, Indexer: stringIndex[Session]{func(s *Session) string { return s.ID }}},
			"node": {Name: "node", Indexer: stringIndex[Session]{func(s *Session) string { return s.Node }}},
		}},
		tableIndex: {Name: tableIndex, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringIndex[indexEntry]{func(e *indexEntry) string { return e.Key }}},
		}},
	}}
}

// State is the indexed in-memory state the FSM applies Raft entries to.
// Reads take a watch set and add the channels they depend on; a commit
// that changes what was read closes one of them. Safe for concurrent use.
type State struct {
	db      *memdb.MemDB
	abandon chan struct{}
	lists   listCache
}

func newState() *State {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant: an error here is a programming error.
		panic(fmt.Sprintf("kv: invalid memdb schema: %v", err))
	}
	return &State{db: db, abandon: make(chan struct{})}
}

// AbandonCh closes when this State is replaced by a snapshot restore;
// readers must then re-read from the Server's current State.
func (s *State) AbandonCh() <-chan struct{} { return s.abandon }

func (s *State) abandonNow() { close(s.abandon) }

func maxIndex(tx *memdb.Txn, tables ...string) uint64 {
	var m uint64
	for _, t := range tables {
		raw, err := tx.First(tableIndex, "id", t)
		if err == nil && raw != nil {
			m = max(m, raw.(*indexEntry).Value)
		}
	}
	return m
}

func setIndex(tx *memdb.Txn, table string, idx uint64) error {
	return tx.Insert(tableIndex, &indexEntry{Key: table, Value: idx})
}

// Index is the highest index of any write to the KV tables.
func (s *State) Index() uint64 {
	tx := s.db.Txn(false)
	defer tx.Abort()
	return maxIndex(tx, tableKVs, tableTombstones, tableSessions)
}

// Get reads one key. Its index is the entry's ModifyIndex, or, for a
// missing key, the KV table's (Consul's KVS.Get: a 404 still carries an
// index that moves when the key appears).
func (s *State) Get(ws memdb.WatchSet, key string) (uint64, *Entry, error) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	return getTxn(tx, ws, key)
}

func getTxn(tx *memdb.Txn, ws memdb.WatchSet, key string) (uint64, *Entry, error) {
	ch, raw, err := tx.FirstWatch(tableKVs, "id", key)
	if err != nil {
		return 0, nil, fmt.Errorf("kv: read %q: %w", key, err)
	}
	ws.Add(ch)
	if raw == nil {
		return maxIndex(tx, tableKVs, tableTombstones), nil, nil
	}
	e := raw.(*Entry)
	return e.ModifyIndex, e, nil
}

// List reads every entry under prefix in key order. The index is the
// highest ModifyIndex under the prefix, counting deletions (tombstones), so
// it changes exactly when the listing can have. The slice may be shared
// with other readers: callers must not change it.
func (s *State) List(ws memdb.WatchSet, prefix string) (uint64, []*Entry, error) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	return listTxn(tx, ws, prefix, &s.lists)
}

// listTxn lists prefix in tx. With a cache (reads outside a write
// transaction), a listing read before is answered from it when neither
// tree changed under prefix since: the trees are immutable and every
// write replaces each node on its path, with a new watch channel, so the
// same two channels mean the same entries and tombstones.
func listTxn(tx *memdb.Txn, ws memdb.WatchSet, prefix string, cache *listCache) (uint64, []*Entry, error) {
	it, err := tx.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		return 0, nil, fmt.Errorf("kv: list %q: %w", prefix, err)
	}
	tit, err := tx.Get(tableTombstones, "id_prefix", prefix)
	if err != nil {
		return 0, nil, fmt.Errorf("kv: read tombstones %q: %w", prefix, err)
	}
	kvCh, tombCh := it.WatchCh(), tit.WatchCh()
	ws.Add(kvCh)
	ws.Add(tombCh)
	if cache != nil {
		if l := cache.get(prefix, kvCh, tombCh); l != nil {
			// Shared, not copied: callers only read a listing (see
			// List), and the clip makes an append reallocate.
			return l.index, slices.Clip(l.entries), nil
		}
	}
	var (
		idx     uint64
		entries []*Entry
	)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*Entry)
		idx = max(idx, e.ModifyIndex)
		entries = append(entries, e)
	}
	for raw := tit.Next(); raw != nil; raw = tit.Next() {
		idx = max(idx, raw.(*tombstone).Index)
	}
	// An empty listing, and the whole store's, answer the tables'
	// index, which writes elsewhere move: those are not cached.
	if idx == 0 || prefix == "" {
		return max(idx, maxIndex(tx, tableKVs, tableTombstones)), entries, nil
	}
	if cache != nil {
		cache.put(prefix, &cachedList{kvCh: kvCh, tombCh: tombCh, index: idx, entries: slices.Clone(entries)})
	}
	return idx, entries, nil
}

// listCache keeps recent KV listings (GET ?recurse of a prefix that
// clients poll, as consul-template and watches do) with the watch
// channels of the trees they were read from (see listTxn). A listing
// costs then a lookup and a copy of its pointers, not a walk of the
// tree. It is bounded; past the bounds, arbitrary listings make room.
type listCache struct {
	mu      sync.Mutex
	m       map[string]*cachedList
	entries int // the entries all listings hold
}

type cachedList struct {
	kvCh, tombCh <-chan struct{}
	index        uint64
	entries      []*Entry
}

// Bounds of the listing cache; a longer listing is not cached.
const (
	listCacheLists   = 1024
	listCacheEntries = 1 << 16
	listCacheLongest = 4096
)

func (c *listCache) get(prefix string, kvCh, tombCh <-chan struct{}) *cachedList {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.m[prefix]
	if l == nil || l.kvCh != kvCh || l.tombCh != tombCh {
		return nil
	}
	return l
}

func (c *listCache) put(prefix string, l *cachedList) {
	if len(l.entries) > listCacheLongest {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*cachedList{}
	}
	if old := c.m[prefix]; old != nil {
		c.entries -= len(old.entries)
		delete(c.m, prefix)
	}
	for k, old := range c.m {
		if len(c.m) < listCacheLists && c.entries+len(l.entries) <= listCacheEntries {
			break
		}
		c.entries -= len(old.entries)
		delete(c.m, k)
	}
	c.m[prefix] = l
	c.entries += len(l.entries)
}

// Keys lists keys under prefix. With a separator, a key is cut just after
// the first separator that follows the prefix, and repeats are dropped:
// Consul's ?keys&separator=/ folder listing.
func (s *State) Keys(ws memdb.WatchSet, prefix, separator string) (uint64, []string, error) {
	idx, entries, err := s.List(ws, prefix)
	if err != nil {
		return 0, nil, err
	}
	keys := make([]string, 0, len(entries))
	var last string
	for _, e := range entries {
		k := e.Key
		if separator != "" {
			if i := strings.Index(k[len(prefix):], separator); i >= 0 {
				k = k[:len(prefix)+i+len(separator)]
			}
		}
		if k == last && len(keys) > 0 {
			continue
		}
		keys = append(keys, k)
		last = k
	}
	return idx, keys, nil
}

// Session reads one session; nil when missing. The index is the sessions
// table's.
func (s *State) Session(ws memdb.WatchSet, id string) (uint64, *Session, error) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	idx := maxIndex(tx, tableSessions)
	ch, raw, err := tx.FirstWatch(tableSessions, "id", id)
	if err != nil {
		return 0, nil, fmt.Errorf("kv: read session %q: %w", id, err)
	}
	ws.Add(ch)
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*Session), nil
}

// Sessions lists sessions, of one node when node is not empty.
func (s *State) Sessions(ws memdb.WatchSet, node string) (uint64, []*Session, error) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	idx := maxIndex(tx, tableSessions)
	var (
		it  memdb.ResultIterator
		err error
	)
	if node == "" {
		it, err = tx.Get(tableSessions, "id")
	} else {
		it, err = tx.Get(tableSessions, "node", node)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("kv: list sessions: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Session))
	}
	return idx, out, nil
}

// --- writes, applied by the FSM inside one memdb write transaction ---

// setTxn writes e at idx, keeping CreateIndex and LockIndex of an existing
// entry; a plain set also keeps the lock holder (Consul's kvsSetTxn).
func setTxn(tx *memdb.Txn, idx uint64, e *Entry, updateSession bool) error {
	raw, err := tx.First(tableKVs, "id", e.Key)
	if err != nil {
		return err
	}
	old, _ := raw.(*Entry)
	written, err := putTxn(tx, idx, old, e, updateSession)
	if !written || err != nil {
		return err
	}
	return setIndex(tx, tableKVs, idx)
}

// putTxn is setTxn given the entry e replaces (nil for none), without
// recording idx as the table's index. It reports whether it wrote: a
// write that changes nothing (sameEntry) is skipped, as Consul's
// kvsSetTxn skips it, so the entry keeps its ModifyIndex, a CAS on it
// still holds and its watchers sleep on; e then carries old's indexes.
func putTxn(tx *memdb.Txn, idx uint64, old, e *Entry, updateSession bool) (bool, error) {
	if old != nil {
		e.CreateIndex = old.CreateIndex
		e.LockIndex = old.LockIndex
		if !updateSession {
			e.Session = old.Session
		}
		if sameEntry(old, e) {
			e.ModifyIndex = old.ModifyIndex
			return false, nil
		}
	} else {
		e.CreateIndex = idx
	}
	e.ModifyIndex = idx
	return true, tx.Insert(tableKVs, e)
}

// sameEntry reports whether e, written over old, would change nothing a
// reader sees (Consul's DirEntry.Equal).
func sameEntry(old, e *Entry) bool {
	return old.Key == e.Key && old.Flags == e.Flags && old.Session == e.Session &&
		old.LockIndex == e.LockIndex && bytes.Equal(old.Value, e.Value)
}

func deleteTxn(tx *memdb.Txn, idx uint64, key string) error {
	raw, err := tx.First(tableKVs, "id", key)
	if err != nil || raw == nil {
		return err
	}
	if err := tx.Delete(tableKVs, raw); err != nil {
		return err
	}
	if err := tx.Insert(tableTombstones, &tombstone{Key: key, Index: idx}); err != nil {
		return err
	}
	if err := setIndex(tx, tableKVs, idx); err != nil {
		return err
	}
	return setIndex(tx, tableTombstones, idx)
}

func deleteTreeTxn(tx *memdb.Txn, idx uint64, prefix string) error {
	it, err := tx.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		return err
	}
	var keys []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		keys = append(keys, raw.(*Entry).Key)
	}
	for _, k := range keys {
		if err := deleteTxn(tx, idx, k); err != nil {
			return err
		}
	}
	return nil
}

// casTxn sets e only if its Index matches the entry's ModifyIndex; index
// 0 means "only if the key does not exist".
func casTxn(tx *memdb.Txn, idx uint64, op *Op) (bool, error) {
	raw, err := tx.First(tableKVs, "id", op.Key)
	if err != nil {
		return false, err
	}
	if op.Index == 0 && raw != nil {
		return false, nil
	}
	if op.Index != 0 && (raw == nil || raw.(*Entry).ModifyIndex != op.Index) {
		return false, nil
	}
	return true, setTxn(tx, idx, &Entry{Key: op.Key, Value: op.Value, Flags: op.Flags}, false)
}

func deleteCASTxn(tx *memdb.Txn, idx uint64, op *Op) (bool, error) {
	raw, err := tx.First(tableKVs, "id", op.Key)
	if err != nil {
		return false, err
	}
	if raw == nil {
		// Deleting what is not there succeeds (Consul's kvsDeleteCASTxn).
		return true, nil
	}
	if raw.(*Entry).ModifyIndex != op.Index {
		return false, nil
	}
	return true, deleteTxn(tx, idx, op.Key)
}

// lockTxn acquires op.Key for op.Session (Consul's kvsLockTxn). A missing
// session is an error; a lock held by another session is a plain false.
func lockTxn(tx *memdb.Txn, idx uint64, op *Op) (bool, error) {
	if op.Session == "" {
		return false, fmt.Errorf("%w: missing session: acquiring key %q needs one", ErrInvalidRequest, op.Key)
	}
	sess, err := tx.First(tableSessions, "id", op.Session)
	if err != nil {
		return false, err
	}
	if sess == nil {
		return false, fmt.Errorf("%w: invalid session %q", ErrInvalidRequest, op.Session)
	}
	e := &Entry{Key: op.Key, Value: op.Value, Flags: op.Flags, Session: op.Session, LockIndex: 1, CreateIndex: idx, ModifyIndex: idx}
	raw, err := tx.First(tableKVs, "id", op.Key)
	if err != nil {
		return false, err
	}
	if raw != nil {
		old := raw.(*Entry)
		e.CreateIndex = old.CreateIndex
		switch old.Session {
		case op.Session:
			e.LockIndex = old.LockIndex
		case "":
			e.LockIndex = old.LockIndex + 1
		default:
			return false, nil
		}
		if sameEntry(old, e) {
			// The holder locking again with the same value: held, and
			// nothing to write (putTxn).
			return true, nil
		}
	}
	if err := tx.Insert(tableKVs, e); err != nil {
		return false, err
	}
	return true, setIndex(tx, tableKVs, idx)
}

// unlockTxn releases op.Key if op.Session holds it (Consul's kvsUnlockTxn).
func unlockTxn(tx *memdb.Txn, idx uint64, op *Op) (bool, error) {
	if op.Session == "" {
		return false, fmt.Errorf("%w: missing session: releasing key %q needs one", ErrInvalidRequest, op.Key)
	}
	raw, err := tx.First(tableKVs, "id", op.Key)
	if err != nil {
		return false, err
	}
	if raw == nil || raw.(*Entry).Session != op.Session {
		return false, nil
	}
	return true, setTxn(tx, idx, &Entry{Key: op.Key, Value: op.Value, Flags: op.Flags}, true)
}

// applyOp performs one KV write and reports whether it took effect.
func applyOp(tx *memdb.Txn, idx uint64, op *Op) (bool, error) {
	switch op.Verb {
	case VerbSet:
		return true, setTxn(tx, idx, &Entry{Key: op.Key, Value: op.Value, Flags: op.Flags}, false)
	case VerbCAS:
		return casTxn(tx, idx, op)
	case VerbLock:
		return lockTxn(tx, idx, op)
	case VerbUnlock:
		return unlockTxn(tx, idx, op)
	case VerbDelete:
		return true, deleteTxn(tx, idx, op.Key)
	case VerbDeleteCAS:
		return deleteCASTxn(tx, idx, op)
	case VerbDeleteTree:
		return true, deleteTreeTxn(tx, idx, op.Key)
	}
	return false, fmt.Errorf("%w: %q is not a KV write", ErrInvalidRequest, op.Verb)
}

// validateWrite rejects writes that can never succeed before they reach Raft.
func validateWrite(op Op) error {
	if !op.Verb.Valid() || op.Verb.IsRead() {
		return fmt.Errorf("%w: %q is not a KV write verb", ErrInvalidRequest, op.Verb)
	}
	if op.Key == "" && op.Verb != VerbDeleteTree {
		return fmt.Errorf("%w: key is empty", ErrInvalidRequest)
	}
	if (op.Verb == VerbLock || op.Verb == VerbUnlock) && op.Session == "" {
		return fmt.Errorf("%w: %s of key %q needs a session ID", ErrInvalidRequest, op.Verb, op.Key)
	}
	return nil
}

// txnOp runs one operation of a transaction. Reads and checks return the
// entry; writes return it without its value (Consul's kvsTxn).
func txnOp(tx *memdb.Txn, idx uint64, op *Op) ([]TxnResult, error) {
	var entry *Entry
	switch op.Verb {
	case VerbGet, VerbCheckIndex, VerbCheckSession, VerbCheckNotExists:
		_, e, err := getTxn(tx, nil, op.Key)
		if err != nil {
			return nil, err
		}
		switch op.Verb {
		case VerbGet:
			if e == nil {
				return nil, fmt.Errorf("key %q doesn't exist", op.Key)
			}
		case VerbCheckIndex:
			if e == nil {
				return nil, fmt.Errorf("key %q doesn't exist", op.Key)
			}
			if e.ModifyIndex != op.Index {
				return nil, fmt.Errorf("current modify index %d for key %q doesn't match %d", e.ModifyIndex, op.Key, op.Index)
			}
		case VerbCheckSession:
			if e == nil {
				return nil, fmt.Errorf("key %q doesn't exist", op.Key)
			}
			if e.Session != op.Session {
				return nil, fmt.Errorf("key %q is not locked by session %q", op.Key, op.Session)
			}
		case VerbCheckNotExists:
			if e != nil {
				return nil, fmt.Errorf("key %q exists", op.Key)
			}
			return nil, nil
		}
		entry = e
		if op.Verb == VerbGet {
			return []TxnResult{{KV: entry}}, nil
		}
	case VerbGetTree:
		_, es, err := listTxn(tx, nil, op.Key, nil)
		if err != nil {
			return nil, err
		}
		out := make([]TxnResult, len(es))
		for i, e := range es {
			out[i] = TxnResult{KV: e}
		}
		return out, nil
	default:
		ok, err := applyOp(tx, idx, op)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, txnFailure(op)
		}
		if op.Verb == VerbDelete || op.Verb == VerbDeleteCAS || op.Verb == VerbDeleteTree {
			return nil, nil
		}
		raw, err := tx.First(tableKVs, "id", op.Key)
		if err != nil || raw == nil {
			return nil, err
		}
		entry = raw.(*Entry)
	}
	c := entry.clone()
	c.Value = nil
	return []TxnResult{{KV: c}}, nil
}

// txnFailure is Consul's message for a write that did not take effect.
func txnFailure(op *Op) error {
	switch op.Verb {
	case VerbCAS:
		return fmt.Errorf("failed to set key %q, index is stale", op.Key)
	case VerbLock:
		return fmt.Errorf("failed to lock key %q, lock is already held", op.Key)
	case VerbUnlock:
		return fmt.Errorf("failed to unlock key %q, lock isn't held, or is held by another session", op.Key)
	case VerbDeleteCAS:
		return fmt.Errorf("failed to delete key %q, index is stale", op.Key)
	}
	return fmt.Errorf("failed to %s key %q", op.Verb, op.Key)
}

// txnResponse is the FSM's answer to a transaction.
type txnResponse struct {
	Index   uint64
	Results []TxnResult
	Errors  []TxnError
}

// applyTxn runs ops in one memdb transaction: all commit, or none.
func (s *State) applyTxn(idx uint64, ops []Op) txnResponse {
	tx := s.db.Txn(true)
	defer tx.Abort()
	var (
		results []TxnResult
		errs    []TxnError
	)
	for i := range ops {
		r, err := txnOp(tx, idx, &ops[i])
		if err != nil {
			errs = append(errs, TxnError{OpIndex: i, What: err.Error()})
			continue
		}
		results = append(results, r...)
	}
	if len(errs) > 0 {
		return txnResponse{Index: idx, Errors: errs}
	}
	tx.Commit()
	return txnResponse{Index: idx, Results: results}
}

// readTxn answers a transaction of reads from the current state.
func (s *State) readTxn(ops []Op) (uint64, []TxnResult, []TxnError) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	idx := maxIndex(tx, tableKVs, tableTombstones)
	var (
		results []TxnResult
		errs    []TxnError
	)
	for i := range ops {
		r, err := txnOp(tx, idx, &ops[i])
		if err != nil {
			errs = append(errs, TxnError{OpIndex: i, What: err.Error()})
			continue
		}
		results = append(results, r...)
	}
	if len(errs) > 0 {
		return idx, nil, errs
	}
	return idx, results, nil
}

// kvBatch applies the KV writes of consecutive log entries in one memdb
// write transaction, committed by commit: the radix tree nodes the
// writes share (the root, common key prefixes, the index table's
// entries) are copied once per transaction rather than once per write,
// and every watcher is woken once. Each write still takes effect as if
// it had its own transaction: one that fails or is refused changes
// nothing (see apply). It holds memdb's writer lock from its first
// write until commit, so nothing else may write the State in between.
type kvBatch struct {
	st   *State
	tx   *memdb.Txn
	done []batchedWrite // the writes tx holds, in order

	// A plain set, the write nearly every PUT is, finds the entry it
	// replaces in set (what the batch set before it) or else in before
	// (the table as the batch found it), not through tx: a read in a
	// memdb write transaction clones the index's radix transaction,
	// which forgets the nodes the batch has already copied, and every
	// set would copy its whole path from the root again. Once any other
	// write runs, the two no longer tell the whole story (a delete, a
	// lock) and every write reads through tx.
	before *memdb.Txn
	set    map[string]*Entry
	other  bool
	// setAt is the index of the last plain set, written to the index
	// table once (by flushIndex) rather than by each set.
	setAt uint64
}

type batchedWrite struct {
	idx uint64
	op  *Op
}

func (s *State) kvBatch() *kvBatch { return &kvBatch{st: s} }

// apply runs one KV write in the batch and reports whether it took
// effect. A write that does not take effect (a failed CAS, a lock held
// by another session) decides so before its first change, as every
// verb of applyOp does, so it leaves the transaction as it was. One
// that fails with an error may have made part of its changes; the
// transaction is then rebuilt from the writes before it.
func (b *kvBatch) apply(idx uint64, op *Op) (bool, error) {
	if b.tx == nil {
		b.tx = b.st.db.Txn(true)
	}
	var (
		ok  bool
		err error
	)
	if op.Verb == VerbSet && !b.other {
		ok, err = true, b.plainSet(idx, op)
	} else {
		b.flushIndex()
		b.other = true
		ok, err = applyOp(b.tx, idx, op)
	}
	if err == nil {
		if ok {
			b.done = append(b.done, batchedWrite{idx, op})
		}
		return ok, nil
	}
	b.tx.Abort()
	b.tx = b.st.db.Txn(true)
	b.other, b.setAt = true, 0
	for _, w := range b.done {
		if _, rerr := applyOp(b.tx, w.idx, w.op); rerr != nil {
			// The same writes on the same state succeeded a moment ago.
			panic(fmt.Sprintf("kv: applying raft entry %d again after entry %d failed: %v", w.idx, idx, rerr))
		}
	}
	return false, err
}

// plainSet is applyOp's VerbSet, finding the entry it replaces without
// a read through tx (see kvBatch).
func (b *kvBatch) plainSet(idx uint64, op *Op) error {
	old, ok := b.set[op.Key]
	if !ok {
		// Before the batch's first write, tx is the table as it found it
		// and has copied nothing.
		read := b.tx
		if len(b.done) > 0 {
			if b.before == nil {
				b.before = b.st.db.Txn(false)
			}
			read = b.before
		}
		raw, err := read.First(tableKVs, "id", op.Key)
		if err != nil {
			return err
		}
		old, _ = raw.(*Entry)
	}
	e := &Entry{Key: op.Key, Value: op.Value, Flags: op.Flags}
	written, err := putTxn(b.tx, idx, old, e, false)
	if err != nil || !written {
		return err
	}
	b.setAt = idx
	if b.set == nil {
		b.set = make(map[string]*Entry)
	}
	b.set[op.Key] = e
	return nil
}

// flushIndex records the last plain set's index in the index table.
func (b *kvBatch) flushIndex() {
	if b.setAt == 0 {
		return
	}
	if err := setIndex(b.tx, tableKVs, b.setAt); err != nil {
		// An insert of a well-formed row into memdb does not fail.
		panic(fmt.Sprintf("kv: record the KV table's index %d: %v", b.setAt, err))
	}
	b.setAt = 0
}

// commit makes the batch's writes visible and wakes their watchers.
func (b *kvBatch) commit() {
	if b.tx == nil {
		return
	}
	b.flushIndex()
	b.tx.Commit()
	if b.before != nil {
		b.before.Abort()
	}
	b.tx, b.before, b.done, b.other = nil, nil, b.done[:0], false
	clear(b.set)
}

func (s *State) createSession(idx uint64, sess *Session) error {
	tx := s.db.Txn(true)
	defer tx.Abort()
	c := *sess
	c.CreateIndex, c.ModifyIndex = idx, idx
	if err := tx.Insert(tableSessions, &c); err != nil {
		return err
	}
	if err := setIndex(tx, tableSessions, idx); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// destroySession ends a session: its locks are released (value kept) or
// their keys deleted, and each key gets the session's lock-delay.
func (s *State) destroySession(idx uint64, id string, delays *lockDelays, now time.Time) error {
	tx := s.db.Txn(true)
	defer tx.Abort()
	raw, err := tx.First(tableSessions, "id", id)
	if err != nil || raw == nil {
		return err
	}
	sess := raw.(*Session)
	it, err := tx.Get(tableKVs, "session", id)
	if err != nil {
		return err
	}
	var held []*Entry
	for r := it.Next(); r != nil; r = it.Next() {
		held = append(held, r.(*Entry))
	}
	for _, e := range held {
		if sess.LockDelay > 0 {
			delays.set(e.Key, now.Add(sess.LockDelay), now)
		}
		if sess.Behavior == BehaviorDelete {
			if err := deleteTxn(tx, idx, e.Key); err != nil {
				return err
			}
			continue
		}
		c := e.clone()
		c.Session = ""
		c.ModifyIndex = idx
		if err := tx.Insert(tableKVs, c); err != nil {
			return err
		}
		if err := setIndex(tx, tableKVs, idx); err != nil {
			return err
		}
	}
	if err := tx.Delete(tableSessions, sess); err != nil {
		return err
	}
	if err := setIndex(tx, tableSessions, idx); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// hasTombstones reports whether any tombstone is at or below upTo.
func (s *State) hasTombstones(upTo uint64) bool {
	tx := s.db.Txn(false)
	defer tx.Abort()
	it, err := tx.Get(tableTombstones, "id")
	if err != nil {
		return false
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*tombstone).Index <= upTo {
			return true
		}
	}
	return false
}

// reapTombstones drops tombstones at or below index.
func (s *State) reapTombstones(upTo uint64) error {
	tx := s.db.Txn(true)
	defer tx.Abort()
	it, err := tx.Get(tableTombstones, "id")
	if err != nil {
		return err
	}
	var dead []*tombstone
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if t := raw.(*tombstone); t.Index <= upTo {
			dead = append(dead, t)
		}
	}
	for _, t := range dead {
		if err := tx.Delete(tableTombstones, t); err != nil {
			return err
		}
	}
	tx.Commit()
	return nil
}

// lockDelays holds, per key, the time before which no session may acquire
// it again after its holder's session ended (Consul's lock-delay). It is
// wall-clock state kept outside Raft, as in Consul, and only consulted by
// the leader before a lock is proposed.
type lockDelays struct {
	mu sync.Mutex
	m  map[string]time.Time
	// sweepAt: when m grows to this many keys, set drops the delays that
	// have run out. Only the leader's lock attempts check a key, so
	// without it a follower (or a leader whose locks are never taken
	// again, as per-job lock keys are) would keep every key it has seen.
	sweepAt int
}

func newLockDelays() *lockDelays { return &lockDelays{m: map[string]time.Time{}} }

// set delays key until until; now is the clock it was read at.
func (d *lockDelays) set(key string, until, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if until.After(d.m[key]) {
		d.m[key] = until
	}
	if len(d.m) >= d.sweepAt {
		for k, u := range d.m {
			if !now.Before(u) {
				delete(d.m, k)
			}
		}
		// Delays last at most a minute, so what is left is what was
		// set lately; sweeping again at twice that keeps the work per
		// set constant on average.
		d.sweepAt = max(2*len(d.m), 64)
	}
}

func (d *lockDelays) blocked(key string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	until, ok := d.m[key]
	if !ok {
		return false
	}
	if now.Before(until) {
		return true
	}
	delete(d.m, key)
	return false
}

// snapshot is the serialisable content of a State.
type snapshot struct {
	Entries    []*Entry
	Tombstones []*tombstone
	Sessions   []*Session
	Indexes    []*indexEntry
}

func (s *State) snapshot() *snapshot {
	tx := s.db.Txn(false)
	defer tx.Abort()
	var snap snapshot
	collect := func(table string, add func(any)) {
		it, err := tx.Get(table, "id")
		if err != nil {
			panic(fmt.Sprintf("kv: snapshot table %s: %v", table, err))
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			add(raw)
		}
	}
	collect(tableKVs, func(r any) { snap.Entries = append(snap.Entries, r.(*Entry)) })
	collect(tableTombstones, func(r any) { snap.Tombstones = append(snap.Tombstones, r.(*tombstone)) })
	collect(tableSessions, func(r any) { snap.Sessions = append(snap.Sessions, r.(*Session)) })
	collect(tableIndex, func(r any) { snap.Indexes = append(snap.Indexes, r.(*indexEntry)) })
	sort.Slice(snap.Entries, func(i, j int) bool { return snap.Entries[i].Key < snap.Entries[j].Key })
	return &snap
}

func restoreState(snap *snapshot) (*State, error) {
	st := newState()
	tx := st.db.Txn(true)
	defer tx.Abort()
	for _, e := range snap.Entries {
		if err := tx.Insert(tableKVs, e); err != nil {
			return nil, err
		}
	}
	for _, t := range snap.Tombstones {
		if err := tx.Insert(tableTombstones, t); err != nil {
			return nil, err
		}
	}
	for _, se := range snap.Sessions {
		if err := tx.Insert(tableSessions, se); err != nil {
			return nil, err
		}
	}
	for _, i := range snap.Indexes {
		if err := tx.Insert(tableIndex, i); err != nil {
			return nil, err
		}
	}
	tx.Commit()
	return st, nil
}
