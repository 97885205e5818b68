package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
)

// maxTxnOps is Consul's limit on the operations of one transaction.
const maxTxnOps = 128

// txnOp is one element of Consul's /v1/txn body (api.TxnOp): a KV,
// node, service, check or session operation (txn_catalog.go for all but
// KV).
type txnOp struct {
	KV      *txnKVOp
	Node    *txnNodeOp
	Service *txnServiceOp
	Check   *txnCheckOp
	Session *txnSessionOp
}

// txnKVOp is api.KVTxnOp; Value is base64 in JSON, as []byte is.
type txnKVOp struct {
	Verb    kv.Verb
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64
	Session string
}

// txnResponse is Consul's TxnResponse: Results on success, Errors (and
// status 409) when the transaction was rolled back.
type txnResponse struct {
	Results []kv.TxnResult
	Errors  []kv.TxnError
}

// txn serves PUT /v1/txn as Consul's Txn endpoint does. A transaction of
// reads only takes the read options (?stale, ?consistent) and carries the
// X-Consul-* headers; so do writes here, which Consul leaves without them.
func (h *handler) txn(c *call) error {
	body, err := readBody(c, maxBodySize, "a transaction")
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.code == http.StatusRequestEntityTooLarge {
			return tooLarge("Request body too large, max size: %d bytes", maxBodySize)
		}
		return err
	}
	var in []txnOp
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil {
		return badRequest("Failed to parse body: %v", err)
	}
	if len(in) == 0 {
		return badRequest("the transaction has no operations; give at least one, e.g. [{\"KV\":{\"Verb\":\"get\",\"Key\":\"foo\"}}]")
	}
	if len(in) > maxTxnOps {
		return tooLarge("Transaction contains too many operations (%d > %d)", len(in), maxTxnOps)
	}
	ops := make([]kv.Op, 0, len(in))
	kvIndex := make([]int, 0, len(in)) // op index of each KV op
	ct := &catalogTxn{h: h}
	var preErrs []kv.TxnError
	for i, op := range in {
		// Consul's Txn preCheck: each operation is vetted against the
		// token; any refusal fails the whole transaction (409) with the
		// refusal's text as that operation's error.
		if err := h.checkTxnOp(c, op); err != nil {
			if errors.Is(err, acl.ErrNotFound) {
				return err
			}
			preErrs = append(preErrs, kv.TxnError{OpIndex: i, What: err.Error()})
			continue
		}
		switch {
		case op.KV != nil:
			if n := len(op.KV.Value); n > maxBodySize {
				return tooLarge("Value for key %q is too large (%d > %d bytes)", op.KV.Key, n, maxBodySize)
			}
			ops = append(ops, kv.Op{
				Verb:    op.KV.Verb,
				Key:     op.KV.Key,
				Value:   op.KV.Value,
				Flags:   op.KV.Flags,
				Index:   op.KV.Index,
				Session: op.KV.Session,
			})
			kvIndex = append(kvIndex, i)
		case op.Node != nil || op.Service != nil || op.Check != nil:
			if h.catalog == nil {
				return errNoCatalog
			}
			if !ct.used {
				// Held until the transaction ends: its catalog
				// preconditions stay true until it commits.
				if err := ct.lock(); err != nil {
					return err
				}
				defer ct.unlock()
			}
			if what := ct.precheck(op); what != "" {
				preErrs = append(preErrs, kv.TxnError{OpIndex: i, What: what})
			}
		case op.Session != nil:
			if what := h.sessionPrecheck(c.ctx, op.Session); what != "" {
				preErrs = append(preErrs, kv.TxnError{OpIndex: i, What: what})
			}
		default:
			return badRequest("Failed to parse body: operation %d is empty; give a KV, Node, Service, Check or Session operation, e.g. {\"KV\":{\"Verb\":\"get\",\"Key\":\"foo\"}}", i)
		}
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	// Transactions do not block.
	o.MinIndex, o.MaxWait = 0, 0
	if len(preErrs) > 0 {
		setMeta(c.w, kv.QueryMeta{KnownLeader: h.store.Leader() != ""}, o)
		return writeJSON(c.w, http.StatusConflict, txnResponse{Errors: preErrs})
	}
	var m kv.QueryMeta
	var results []kv.TxnResult
	if ct.used {
		// The catalog half commits with the KV half (txn_atomic.go).
		var txnErrs []kv.TxnError
		m, results, txnErrs, err = ct.commit(c.ctx, o, in, ops, kvIndex)
		if err != nil {
			return err
		}
		if len(txnErrs) > 0 {
			setMeta(c.w, m, o)
			return writeJSON(c.w, http.StatusConflict, txnResponse{Errors: txnErrs})
		}
	} else if len(ops) > 0 {
		var txnErrs []kv.TxnError
		m, results, txnErrs, err = h.store.Txn(c.ctx, o, ops)
		if err != nil && !(errors.Is(err, kv.ErrTxnFailed) && len(txnErrs) > 0) {
			return err
		}
		if len(txnErrs) > 0 {
			setMeta(c.w, m, o)
			return writeJSON(c.w, http.StatusConflict, txnResponse{Errors: remapTxnErrors(txnErrs, kvIndex)})
		}
	} else {
		m.KnownLeader = h.store.Leader() != ""
	}
	for _, op := range in {
		if op.Session != nil {
			if err := h.store.DestroySession(c.ctx, op.Session.Session.ID); err != nil {
				return err
			}
		}
	}
	setMeta(c.w, m, o)
	if len(ops) == len(in) {
		results = filterTxnResults(c, results, func(r kv.TxnResult) *kv.Entry { return r.KV })
		if results == nil {
			results = []kv.TxnResult{}
		}
		return writeJSON(c.w, http.StatusOK, txnResponse{Results: results})
	}
	merged := filterTxnResults(c, mergeResults(in, results, ct), func(r *txnResultOut) *kv.Entry { return r.KV })
	return writeJSON(c.w, http.StatusOK, struct{ Results []*txnResultOut }{merged})
}

// remapTxnErrors turns the OpIndex of the KV half's errors into the
// index of the operation in the whole transaction.
func remapTxnErrors(txnErrs []kv.TxnError, kvIndex []int) []kv.TxnError {
	for j := range txnErrs {
		if k := txnErrs[j].OpIndex; k >= 0 && k < len(kvIndex) {
			txnErrs[j].OpIndex = kvIndex[k]
		}
	}
	return txnErrs
}

// mergeResults puts the KV results and the catalog ones in the order of
// the operations. A KV operation has one result, none for deletes and
// check-not-exists, and all the rest for get-tree.
func mergeResults(in []txnOp, kvResults []kv.TxnResult, ct *catalogTxn) []*txnResultOut {
	out := []*txnResultOut{}
	next := 0
	for i, op := range in {
		switch {
		case op.KV != nil:
			n := 1
			switch op.KV.Verb {
			case kv.VerbDelete, kv.VerbDeleteCAS, kv.VerbDeleteTree, kv.VerbCheckNotExists:
				n = 0
			case kv.VerbGetTree:
				n = len(kvResults) - next - laterKVResults(in[i+1:])
			}
			for j := 0; j < n && next < len(kvResults); j++ {
				out = append(out, &txnResultOut{KV: kvResults[next].KV})
				next++
			}
		case op.Session != nil:
		default:
			if r := ct.result(op); r != nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// laterKVResults counts the results the KV operations of ops give,
// get-tree ones aside.
func laterKVResults(ops []txnOp) int {
	n := 0
	for _, op := range ops {
		if op.KV == nil {
			continue
		}
		switch op.KV.Verb {
		case kv.VerbDelete, kv.VerbDeleteCAS, kv.VerbDeleteTree, kv.VerbCheckNotExists, kv.VerbGetTree:
		default:
			n++
		}
	}
	return n
}

// checkTxnOp vets one operation of a transaction as Consul's Txn
// preCheck does (kvsPreApply, vetNodeTxnOp, vetServiceTxnOp,
// vetCheckTxnOp). KV reads (get, get-tree) are filtered on the way out
// instead, as in Consul; the ACL system's keys are refused to every verb.
func (h *handler) checkTxnOp(c *call, op txnOp) error {
	switch {
	case op.KV != nil:
		k := op.KV
		switch k.Verb {
		case kv.VerbDeleteTree:
			return h.checkDelete(c, kv.Op{Verb: k.Verb, Key: k.Key})
		case kv.VerbGetTree:
			if reservedKey(k.Key) {
				return errReserved(k.Key)
			}
			return nil
		case kv.VerbGet:
			if reservedKey(k.Key) {
				return errReserved(k.Key)
			}
			return nil
		case kv.VerbCheckSession, kv.VerbCheckIndex:
			return c.checkKey(k.Key, acl.Read)
		default:
			return c.checkKey(k.Key, acl.Write)
		}
	case op.Node != nil:
		return c.allow(acl.Node, op.Node.Node.Node, acl.Write)
	case op.Service != nil:
		return c.allow(acl.Service, op.Service.Service.Service, acl.Write)
	case op.Check != nil:
		if op.Check.Check.ServiceID == "" {
			return c.allow(acl.Node, op.Check.Check.Node, acl.Write)
		}
		return c.allow(acl.Service, op.Check.Check.ServiceName, acl.Write)
	case op.Session != nil:
		if c.aclOff() {
			return nil
		}
		return h.checkSessionWrite(c, op.Session.Session.ID)
	}
	return nil
}

// filterTxnResults drops KV results the token may not read, and the ACL
// system's entries a get-tree reached (Consul's txnResultsFilter).
func filterTxnResults[T any](c *call, rs []T, entry func(T) *kv.Entry) []T {
	rs = slices.DeleteFunc(rs, func(r T) bool { e := entry(r); return e != nil && reservedKey(e.Key) })
	return filterList(c, rs, func(r T) bool { e := entry(r); return e == nil || c.can(acl.Key, e.Key, acl.Read) })
}
