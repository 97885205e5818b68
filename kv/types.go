package kv

import (
	"errors"
	"time"

	"github.com/cairn-dev/cairn/blocking"
)

// Entry is one key/value pair. Its JSON form is Consul's DirEntry, so the
// HTTP layer can write it out as is.
type Entry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

func (e *Entry) clone() *Entry {
	c := *e
	return &c
}

// Session behaviours: what happens to the keys a session holds when it ends.
const (
	BehaviorRelease = "release"
	BehaviorDelete  = "delete"
)

// DefaultLockDelay is Consul's lock-delay for sessions that do not set one.
const DefaultLockDelay = 15 * time.Second

// Session is a Consul session. Its JSON form is Consul's session entry.
type Session struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

// ServiceCheck names a service check a session is tied to.
type ServiceCheck struct {
	ID        string
	Namespace string
}

// Verb is a KV operation, named as Consul's transaction API names it.
type Verb string

// The KV verbs of Consul's /v1/txn, which also describe every KV write.
const (
	VerbSet            Verb = "set"
	VerbDelete         Verb = "delete"
	VerbDeleteCAS      Verb = "delete-cas"
	VerbDeleteTree     Verb = "delete-tree"
	VerbCAS            Verb = "cas"
	VerbLock           Verb = "lock"
	VerbUnlock         Verb = "unlock"
	VerbGet            Verb = "get"
	VerbGetTree        Verb = "get-tree"
	VerbCheckIndex     Verb = "check-index"
	VerbCheckSession   Verb = "check-session"
	VerbCheckNotExists Verb = "check-not-exists"
)

// IsRead reports whether the verb only reads.
func (v Verb) IsRead() bool {
	switch v {
	case VerbGet, VerbGetTree, VerbCheckIndex, VerbCheckSession, VerbCheckNotExists:
		return true
	}
	return false
}

// TxnReadsValues reports whether a transaction that writes also reads
// values (get, get-tree). The state machine does not keep such a
// transaction's answer for a repeat of its write ID: what it read could
// be any amount of data, kept in every server's memory and snapshot for
// the whole window. So it is applied without an ID and, once it may have
// been applied, not sent again (as in Consul).
func TxnReadsValues(ops []Op) bool {
	for _, op := range ops {
		if op.Verb == VerbGet || op.Verb == VerbGetTree {
			return true
		}
	}
	return false
}

// Valid reports whether v is a verb this store knows.
func (v Verb) Valid() bool {
	switch v {
	case VerbSet, VerbDelete, VerbDeleteCAS, VerbDeleteTree, VerbCAS, VerbLock, VerbUnlock:
		return true
	}
	return v.IsRead()
}

// Op is one KV operation: a write on its own (PUT/DELETE /v1/kv) or one
// element of a transaction. Index is the CAS/check index; Session the lock
// holder for lock, unlock and check-session.
type Op struct {
	Verb    Verb
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64
	Session string
}

// TxnError is a failed operation of a transaction, in Consul's shape.
type TxnError struct {
	OpIndex int
	What    string
}

// TxnResult is what one operation of a successful transaction returns.
// Writes return the entry without its value, as Consul does.
type TxnResult struct {
	KV *Entry
}

// QueryOptions are the read options of Consul's API.
type QueryOptions struct {
	// MinIndex makes the read a blocking query: it returns once the
	// answer's index is above MinIndex, or after MaxWait.
	MinIndex uint64
	// MaxWait bounds a blocking query; zero means DefaultQueryWait and
	// anything above MaxQueryWait is clamped. A random jitter of up to
	// MaxWait/16 is added, as Consul does, to spread reconnecting clients.
	MaxWait time.Duration
	// Consistent verifies leadership with a quorum before reading.
	Consistent bool
	// Stale lets any server answer from its own state, leader or not.
	Stale bool
	// AtOnce makes a read that would first wait (for a new leader's
	// barrier, or a quorum to confirm this leader's lease) fail with
	// ErrWouldWait instead: a caller that bounds its waits with a timer
	// answers the common case without one, then retries with it.
	// Meaningful on this server only; never sent to another.
	AtOnce bool `json:"-"`
}

// Blocking query limits, Consul's; package blocking owns them.
const (
	DefaultQueryWait = blocking.DefaultWait
	MaxQueryWait     = blocking.MaxWait
)

// QueryMeta describes the state an answer was read from.
type QueryMeta struct {
	Index       uint64
	KnownLeader bool
	LastContact time.Duration
	// ResultsFilteredByACLs: the answer left out what the caller's token
	// may not read (Consul's X-Consul-Results-Filtered-By-ACLs).
	ResultsFilteredByACLs bool
}

// Errors callers branch on. The HTTP layer maps each to one status code.
var (
	// ErrNotLeader: this server is not the Raft leader and the request
	// needs the leader.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader: the cluster has no leader at the moment (no quorum).
	ErrNoLeader = errors.New("no cluster leader")
	// ErrSessionNotFound: the named session does not exist (or expired).
	ErrSessionNotFound = errors.New("session not found")
	// ErrInvalidRequest wraps errors in a request's contents.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrTxnFailed: a transaction was rolled back; the TxnErrors say why.
	ErrTxnFailed = errors.New("transaction failed")
	// ErrShutdown: the server is stopping.
	ErrShutdown = errors.New("kv server is shut down")
	// ErrWouldWait: a read made with QueryOptions.AtOnce needs a wait.
	ErrWouldWait = errors.New("the read would wait for leadership to be confirmed")
)
