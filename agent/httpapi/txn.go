package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cairn-dev/cairn/kv"
)

// maxTxnOps is Consul's limit on the operations of one transaction.
const maxTxnOps = 128

// txnOp is one element of Consul's /v1/txn body (api.TxnOp). Only KV is
// supported; the others are decoded only to name them in the refusal.
type txnOp struct {
	KV      *txnKVOp
	Node    *json.RawMessage
	Service *json.RawMessage
	Check   *json.RawMessage
	Session *json.RawMessage
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
	if len(in) > maxTxnOps {
		return tooLarge("Transaction contains too many operations (%d > %d)", len(in), maxTxnOps)
	}
	ops := make([]kv.Op, 0, len(in))
	for i, op := range in {
		if op.KV == nil {
			kind := ""
			switch {
			case op.Node != nil:
				kind = "Node"
			case op.Service != nil:
				kind = "Service"
			case op.Check != nil:
				kind = "Check"
			case op.Session != nil:
				kind = "Session"
			default:
				return badRequest("Failed to parse body: operation %d is empty; give a KV operation, e.g. {\"KV\":{\"Verb\":\"get\",\"Key\":\"foo\"}}", i)
			}
			return badRequest("operation %d is a %s operation; cairn's /v1/txn supports only KV operations (catalog state is not kept in the Raft store)", i, kind)
		}
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
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	// Transactions do not block.
	o.MinIndex, o.MaxWait = 0, 0
	m, results, txnErrs, err := h.store.Txn(c.ctx, o, ops)
	if err != nil && !(errors.Is(err, kv.ErrTxnFailed) && len(txnErrs) > 0) {
		return err
	}
	setMeta(c.w, m, o)
	if len(txnErrs) > 0 {
		return writeJSON(c.w, http.StatusConflict, txnResponse{Errors: txnErrs})
	}
	if results == nil {
		results = []kv.TxnResult{}
	}
	return writeJSON(c.w, http.StatusOK, txnResponse{Results: results})
}
