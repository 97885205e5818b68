package catalogtxn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
	"github.com/google/uuid"
)

// Prefix is the reserved KV prefix of the intents.
const Prefix = "_cairn/txn/"

// Store is what the coordinator needs from the replicated store (the kv
// server, or the forwarder of a client agent). Called concurrently.
type Store interface {
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Apply(ctx context.Context, op kv.Op) (bool, error)
}

// Catalog is what the coordinator needs from this agent's catalog
// (*catalog.Catalog).
type Catalog interface {
	Register(catalog.Registration) error
	Deregister(catalog.Deregistration) error
	CheckTxn([]catalog.TxnStep) error
	TxnApplied(id string) bool
	MarkTxnApplied(id string) error
	ForgetTxn(id string) error
	AppliedTxns() []string
}

// Crash points, for Config.Crash: where a test may kill the process.
const (
	CrashPrepared  = "prepared"  // the intent is built; the Raft transaction not yet sent
	CrashCommitted = "committed" // the Raft transaction committed; nothing applied to the catalog
	CrashApplying  = "applying"  // the first catalog step applied, the others not
	CrashApplied   = "applied"   // every step applied and recorded; the intent key not yet deleted
)

// Config configures a Coordinator.
type Config struct {
	// Node is this agent's node name: its intents live under
	// Prefix+Node+"/". Required.
	Node  string
	Store Store // required
	// Agent is the store as the agent's own requests use it (the
	// Router's Internal view: forwarded with the agent token), for
	// deleting applied intents and for recovery, which no caller's
	// token covers; nil: Store.
	Agent   Store
	Catalog Catalog // required
	// Logger gets a line per recovered intent and per failure; nil
	// discards.
	Logger *slog.Logger
	// Crash, when set, is called at each crash point (CrashCommitted,
	// ...) of a transaction this agent commits. Tests set it (through
	// the agent's CAIRN_TEST_TXN_CRASH) to kill the process there.
	Crash func(point string)
}

// Coordinator commits transactions with catalog steps and completes the
// ones a crash interrupted. Safe for concurrent use.
type Coordinator struct {
	cfg Config
	mu  sync.Mutex
}

// New validates cfg; it starts nothing.
func New(cfg Config) (*Coordinator, error) {
	switch {
	case cfg.Node == "":
		return nil, errors.New("catalogtxn: Config.Node is empty; give this agent's node name")
	case cfg.Store == nil:
		return nil, errors.New("catalogtxn: Config.Store is nil")
	case cfg.Catalog == nil:
		return nil, errors.New("catalogtxn: Config.Catalog is nil")
	}
	if cfg.Agent == nil {
		cfg.Agent = cfg.Store
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Crash == nil {
		cfg.Crash = func(string) {}
	}
	return &Coordinator{cfg: cfg}, nil
}

// Lock serializes the transactions with catalog steps of this agent:
// hold it from checking their preconditions until Commit returns.
func (c *Coordinator) Lock() { c.mu.Lock() }

// Unlock ends what Lock began.
func (c *Coordinator) Unlock() { c.mu.Unlock() }

// intent is what the KV store keeps of a transaction's catalog half.
type intent struct {
	Steps []catalog.TxnStep
}

// ErrIncomplete reports a transaction whose KV half committed but whose
// catalog half could not be applied yet; the recovery loop applies it.
var ErrIncomplete = errors.New("the transaction committed but its catalog changes are not applied yet")

// Check refuses steps that the catalog would refuse, before anything
// commits.
func (c *Coordinator) Check(steps []catalog.TxnStep) error { return c.cfg.Catalog.CheckTxn(steps) }

// Commit runs the KV operations and the catalog steps as one
// transaction; the caller holds Lock and has checked the catalog
// preconditions and Check. The answer is the KV half's: its results (in
// the order of ops) and errors. With errors, or an error from the store
// before the commit, nothing was applied. An error wrapping
// ErrIncomplete means the transaction committed and its catalog half
// will be applied by Run.
func (c *Coordinator) Commit(ctx context.Context, q kv.QueryOptions, ops []kv.Op, steps []catalog.TxnStep) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	if len(steps) == 0 {
		return c.cfg.Store.Txn(ctx, q, ops)
	}
	id := uuid.NewString()
	body, err := json.Marshal(intent{Steps: steps})
	if err != nil {
		return kv.QueryMeta{}, nil, nil, fmt.Errorf("encode the catalog half of the transaction: %w", err)
	}
	key := c.prefix() + id
	all := append(append(make([]kv.Op, 0, len(ops)+1), ops...), kv.Op{Verb: kv.VerbSet, Key: key, Value: body})
	c.cfg.Crash(CrashPrepared)
	m, results, txnErrs, err := c.cfg.Store.Txn(ctx, q, all)
	if err != nil || len(txnErrs) > 0 {
		// Not committed (or, if the store lost track of it, committed
		// later: Run applies it then).
		return m, results, txnErrs, err
	}
	if len(results) > 0 {
		results = results[:len(results)-1] // the intent's own
	}
	c.cfg.Crash(CrashCommitted)
	if err := c.apply(ctx, id, steps, true); err != nil {
		c.cfg.Logger.Error("txn: the catalog half of a committed transaction failed; retrying in the background", "intent", key, "err", err)
		return m, results, nil, fmt.Errorf("%w: %v", ErrIncomplete, err)
	}
	c.cfg.Crash(CrashApplied)
	c.cleanup(ctx, id)
	return m, results, nil, nil
}

func (c *Coordinator) prefix() string { return Prefix + c.cfg.Node + "/" }

// apply applies steps and records id as applied. Every step is
// idempotent (a registration of the same entry, a deregistration of a
// gone one), so applying an intent again after a crash in the middle
// ends in the same state.
func (c *Coordinator) apply(_ context.Context, id string, steps []catalog.TxnStep, crash bool) error {
	for i, st := range steps {
		var err error
		switch {
		case st.Register != nil:
			err = c.cfg.Catalog.Register(*st.Register)
		case st.Deregister != nil:
			err = c.cfg.Catalog.Deregister(*st.Deregister)
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if crash && i == 0 {
			c.cfg.Crash(CrashApplying)
		}
	}
	return c.cfg.Catalog.MarkTxnApplied(id)
}

// cleanup deletes an applied intent's key, then forgets it in the
// ledger. A failure leaves both for Run.
func (c *Coordinator) cleanup(ctx context.Context, id string) {
	if _, err := c.cfg.Agent.Apply(ctx, kv.Op{Verb: kv.VerbDelete, Key: c.prefix() + id}); err != nil {
		c.cfg.Logger.Warn("txn: could not delete an applied intent; the recovery loop retries", "intent", c.prefix()+id, "err", err)
		return
	}
	if err := c.cfg.Catalog.ForgetTxn(id); err != nil {
		c.cfg.Logger.Warn("txn: could not forget an applied intent", "intent", id, "err", err)
	}
}

// Recover makes one pass over this agent's intents: applies those the
// ledger does not have, deletes every applied one, and forgets ledger
// entries whose intent is gone. It returns the KV index the list was
// read at, for blocking on the next change.
func (c *Coordinator) Recover(ctx context.Context, q kv.QueryOptions) (uint64, error) {
	// Wait (blocking query) without the lock, then read again under it:
	// a transaction that committed meanwhile may have applied and
	// deleted an intent the first read saw.
	m, _, err := c.cfg.Agent.List(ctx, q, c.prefix())
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, entries, err := c.cfg.Agent.List(ctx, kv.QueryOptions{}, c.prefix())
	if err != nil {
		return 0, err
	}
	present := map[string]bool{}
	var errs []error
	for _, e := range entries {
		id := strings.TrimPrefix(e.Key, c.prefix())
		present[id] = true
		if !c.cfg.Catalog.TxnApplied(id) {
			var in intent
			if err := json.Unmarshal(e.Value, &in); err != nil {
				errs = append(errs, fmt.Errorf("intent %s: %w; delete the key if it was not written by cairn", e.Key, err))
				continue
			}
			if err := c.apply(ctx, id, in.Steps, false); err != nil {
				errs = append(errs, fmt.Errorf("intent %s: %w", e.Key, err))
				continue
			}
			c.cfg.Logger.Info("txn: applied the catalog half of a transaction an earlier run committed", "intent", e.Key, "steps", len(in.Steps))
		}
		c.cleanup(ctx, id)
	}
	for _, id := range c.cfg.Catalog.AppliedTxns() {
		if !present[id] {
			if err := c.cfg.Catalog.ForgetTxn(id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return m.Index, errors.Join(errs...)
}

// Run completes interrupted transactions until ctx is done: a pass at
// start (after a crash, the intents of the previous run), then one per
// change of this agent's intent prefix (blocking queries on the KV
// store). Failures are logged and retried with a back-off.
func (c *Coordinator) Run(ctx context.Context) error {
	var index uint64
	backoff := time.Second
	for ctx.Err() == nil {
		next, err := c.Recover(ctx, kv.QueryOptions{MinIndex: index, MaxWait: 5 * time.Minute})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.cfg.Logger.Warn("txn: recovering transactions", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			backoff = min(2*backoff, time.Minute)
			index = 0
			continue
		}
		backoff = time.Second
		index = next
	}
	return nil
}
