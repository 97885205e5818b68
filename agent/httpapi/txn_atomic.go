package httpapi

import (
	"context"
	"errors"
	"strings"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/catalogtxn"
	"github.com/cairn-dev/cairn/kv"
)

// How a /v1/txn with catalog operations commits: through
// agent/catalogtxn, which writes the catalog half as an intent in the
// same Raft transaction as the KV half and applies it after the commit
// (again after a crash, from the intent), so that the whole transaction
// is visible or none of it is.

// errNoTxnCoordinator: the handler was built without one and its catalog
// cannot make one.
var errNoTxnCoordinator = errors.New("this agent cannot run transactions with catalog operations: its catalog keeps no transaction ledger")

// lock takes the agent's transaction lock, held until the transaction
// ends (unlock).
func (t *catalogTxn) lock() error {
	if t.h.txns == nil {
		return errNoTxnCoordinator
	}
	t.h.txns.Lock()
	t.used = true
	return nil
}

func (t *catalogTxn) unlock() { t.h.txns.Unlock() }

// commit runs the KV operations ops (kvIndex: the operation index of
// each) and the catalog writes of in as one transaction. Errors come
// back with the index of their operation in in.
func (t *catalogTxn) commit(ctx context.Context, o kv.QueryOptions, in []txnOp, ops []kv.Op, kvIndex []int) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	var steps []catalog.TxnStep
	var stepOp []int // operation index of each step
	for i, op := range in {
		st, what := t.step(op)
		if what != "" {
			return kv.QueryMeta{}, nil, []kv.TxnError{{OpIndex: i, What: what}}, nil
		}
		if st != nil {
			steps = append(steps, *st)
			stepOp = append(stepOp, i)
		}
	}
	if err := t.h.txns.Check(steps); err != nil {
		i := 0
		var se *catalog.TxnStepError
		if errors.As(err, &se) && se.Step < len(stepOp) {
			i = stepOp[se.Step]
			err = se.Err
		}
		return kv.QueryMeta{}, nil, []kv.TxnError{{OpIndex: i, What: err.Error()}}, nil
	}
	m, results, txnErrs, err := t.h.txns.Commit(ctx, o, ops, steps)
	if errors.Is(err, catalogtxn.ErrIncomplete) {
		// Committed: the rest is applied in the background.
		t.h.log.Warn("txn: " + err.Error())
		err = nil
	}
	if err != nil && !(errors.Is(err, kv.ErrTxnFailed) && len(txnErrs) > 0) {
		return m, nil, nil, err
	}
	return m, results, remapTxnErrors(txnErrs, kvIndex), nil
}

// step is op's catalog write, nil for a read or a delete of nothing; a
// non-empty string says why the operation is invalid.
func (t *catalogTxn) step(op txnOp) (*catalog.TxnStep, string) {
	switch {
	case op.Node != nil:
		n := op.Node.Node
		switch op.Node.Verb {
		case "set", "cas":
			return &catalog.TxnStep{Register: &catalog.Registration{Node: catalog.Node{
				ID: n.ID, Node: n.Node, Address: n.Address, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta,
			}}}, ""
		case "delete", "delete-cas":
			if t.node(n.Node) != nil {
				return &catalog.TxnStep{Deregister: &catalog.Deregistration{Node: n.Node}}, ""
			}
		}
	case op.Service != nil:
		s := op.Service
		switch s.Verb {
		case "set", "cas":
			svc, err := s.Service.service()
			if err != nil {
				return nil, err.Error()
			}
			return &catalog.TxnStep{Register: &catalog.Registration{Node: catalog.Node{Node: s.Node}, SkipNodeUpdate: true, Service: svc}}, ""
		case "delete", "delete-cas":
			if t.service(s.Node, s.Service.ID) != nil {
				return &catalog.TxnStep{Deregister: &catalog.Deregistration{Node: s.Node, ServiceID: s.Service.ID}}, ""
			}
		}
	case op.Check != nil:
		c := op.Check.Check
		switch op.Check.Verb {
		case "set", "cas":
			chk, err := c.check(c.ServiceID)
			if err != nil {
				return nil, err.Error()
			}
			return &catalog.TxnStep{Register: &catalog.Registration{Node: catalog.Node{Node: c.Node}, SkipNodeUpdate: true, Checks: []*catalog.Check{chk}}}, ""
		case "delete", "delete-cas":
			if t.check(c.Node, c.CheckID) != nil {
				return &catalog.TxnStep{Deregister: &catalog.Deregistration{Node: c.Node, CheckID: c.CheckID}}, ""
			}
		}
	}
	return nil, ""
}

// newTxnCoordinator is the coordinator of a handler built without one:
// over its catalog, when that keeps a transaction ledger
// (*catalog.Catalog does), with no recovery loop running.
func newTxnCoordinator(cfg Config) *catalogtxn.Coordinator {
	cat, ok := cfg.Catalog.(catalogtxn.Catalog)
	if !ok {
		return nil
	}
	node := cfg.Self.NodeName
	if strings.TrimSpace(node) == "" {
		node = "local"
	}
	co, err := catalogtxn.New(catalogtxn.Config{Node: node, Store: cfg.Store, Catalog: cat, Logger: cfg.Logger})
	if err != nil {
		return nil // transactions with catalog operations then answer errNoTxnCoordinator
	}
	return co
}
