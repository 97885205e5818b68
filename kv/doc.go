// Package kv owns cairn's replicated, linearizable state: Consul-compatible
// key/value entries, sessions and locks, kept in an indexed in-memory store
// (go-memdb) that is the state machine of a hashicorp/raft group, with the
// Raft log and stable store in a write-ahead log (hashicorp/raft-wal; bolt in
// data dirs made with it) and snapshots on disk.
//
// Every write gets its Raft index; every read has the shape
//
//	func (s *State) Get(ws memdb.WatchSet, key string) (index uint64, e *Entry, err error)
//
// so a reader can wait for "anything under this prefix changed after index N"
// on the store's own watch channels, never by polling. Server wraps that into
// Consul's blocking-query contract.
//
// Faults are said as what they are (faults.go, disk.go): a write whose
// result was lost is ErrOutcomeUnknown, and commands carrying a write ID
// are applied at most once, so it may be sent again; disk conditions (full,
// read-only, I/O error) are DiskErrors, seen before Raft meets them where
// the file system tells (a free-space reserve), while reads go on from
// memory. Keys are validated (ValidateKey) and parked blocking queries
// bounded.
//
// kv knows nothing of HTTP, DNS, Docker or templates, and never imports
// agent, dns, template or registrator.
package kv
