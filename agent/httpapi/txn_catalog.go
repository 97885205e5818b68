package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/cairn-dev/cairn/kv"
)

// The catalog and session operations of /v1/txn (api.NodeTxnOp,
// ServiceTxnOp, CheckTxnOp and Consul's session delete). The catalog is
// not in the Raft store (it is each agent's own, spread by gossip), so a
// transaction that mixes them is made all or nothing by
// agent/catalogtxn (txn_atomic.go): every operation's precondition
// (gets, CAS indexes, sessions) is checked first, under a lock that
// serializes such transactions, then the KV operations and the catalog
// writes commit in one Raft transaction (the writes as an intent the
// agent applies, even after a crash). The catalog entries written belong
// to this agent, as with /v1/catalog/register.

type txnNodeOp struct {
	Verb string
	Node struct {
		ID              string
		Node            string
		Address         string
		Datacenter      string
		TaggedAddresses map[string]string
		Meta            map[string]string
		ModifyIndex     uint64
	}
}

type txnServiceOp struct {
	Verb    string
	Node    string
	Service serviceIn
}

type txnCheckOp struct {
	Verb  string
	Check checkIn
}

type txnSessionOp struct {
	Verb    string
	Session struct{ ID string }
}

// txnResultOut is one result of /v1/txn (api.TxnResult).
type txnResultOut struct {
	KV      *kv.Entry         `json:",omitempty"`
	Node    *consuljson.Node  `json:",omitempty"`
	Service *txnServiceResult `json:",omitempty"`
	Check   *txnCheckResult   `json:",omitempty"`
}

// txnServiceResult is a service as a transaction answers it: Consul's
// NodeService, whose Proxy and Connect are objects even when empty.
type txnServiceResult struct {
	*consuljson.Service
	Proxy   json.RawMessage
	Connect json.RawMessage
}

// txnCheckResult is a check as a transaction answers it: ServiceTags
// absent rather than [] when there are none.
type txnCheckResult struct {
	*consuljson.Check
	ServiceTags []string `json:",omitempty"`
}

// catalogTxn is the catalog part of one transaction.
type catalogTxn struct {
	h    *handler
	used bool // the transaction has catalog operations: it holds the lock
}

func (t *catalogTxn) node(name string) *catalog.Node {
	_, n, _ := t.h.catalog.Node(nil, name)
	return n
}

func (t *catalogTxn) service(node, id string) *catalog.Service {
	_, _, svcs := t.h.catalog.Node(nil, node)
	for _, s := range svcs {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (t *catalogTxn) check(node, id string) *catalog.Check {
	_, cs := t.h.catalog.NodeChecks(nil, node)
	for _, c := range cs {
		if c.CheckID == id {
			return c
		}
	}
	return nil
}

// casError is Consul's text for a CAS that lost (its state store's
// txnNode, txnService and txnCheck): "failed to set service "web" on
// node "n1", index is stale". node is "" for a node operation.
func casError(verb, what, id, node string) string {
	action := "set"
	if verb == "delete-cas" {
		action = "delete"
	}
	if node == "" {
		return fmt.Sprintf("failed to %s %s %q, index is stale", action, what, id)
	}
	return fmt.Sprintf("failed to %s %s %q on node %q, index is stale", action, what, id, node)
}

// precheck is op's precondition against the catalog as it is; "" when it
// holds.
func (t *catalogTxn) precheck(op txnOp) string {
	switch {
	case op.Node != nil:
		n := op.Node.Node
		cur := t.node(n.Node)
		switch op.Node.Verb {
		case "get":
			if cur == nil {
				return fmt.Sprintf("node %q doesn't exist", n.Node)
			}
		case "cas", "delete-cas":
			if cur == nil && n.ModifyIndex != 0 || cur != nil && cur.ModifyIndex != n.ModifyIndex {
				return casError(op.Node.Verb, "node", n.Node, "")
			}
		case "set", "delete":
		default:
			return fmt.Sprintf("unknown Node verb %q", op.Node.Verb)
		}
	case op.Service != nil:
		s := op.Service
		cur := t.service(s.Node, s.Service.ID)
		switch s.Verb {
		case "get":
			if cur == nil {
				return fmt.Sprintf("service %q on node %q doesn't exist", s.Service.ID, s.Node)
			}
		case "cas", "delete-cas":
			if cur == nil && s.Service.ModifyIndex != 0 || cur != nil && cur.ModifyIndex != s.Service.ModifyIndex {
				return casError(s.Verb, "service", s.Service.ID, s.Node)
			}
		case "set", "delete":
		default:
			return fmt.Sprintf("unknown Service verb %q", s.Verb)
		}
	case op.Check != nil:
		c := op.Check.Check
		cur := t.check(c.Node, c.CheckID)
		switch op.Check.Verb {
		case "get":
			if cur == nil {
				return fmt.Sprintf("check %q on node %q doesn't exist", c.CheckID, c.Node)
			}
		case "cas", "delete-cas":
			if cur == nil && c.ModifyIndex != 0 || cur != nil && cur.ModifyIndex != c.ModifyIndex {
				return casError(op.Check.Verb, "check", c.CheckID, c.Node)
			}
		case "set", "delete":
		default:
			return fmt.Sprintf("unknown Check verb %q", op.Check.Verb)
		}
	}
	return ""
}

// result is op's result after the transaction: the entry it read or
// wrote, none for a delete.
func (t *catalogTxn) result(op txnOp) *txnResultOut {
	switch {
	case op.Node != nil:
		if strings.HasPrefix(op.Node.Verb, "delete") {
			return nil
		}
		if n := t.node(op.Node.Node.Node); n != nil {
			return &txnResultOut{Node: consuljson.FromNode(n)}
		}
	case op.Service != nil:
		if strings.HasPrefix(op.Service.Verb, "delete") {
			return nil
		}
		if s := t.service(op.Service.Node, op.Service.Service.ID); s != nil {
			out := &txnServiceResult{Service: consuljson.FromService(s), Proxy: s.Proxy, Connect: s.Connect}
			if len(out.Proxy) == 0 {
				out.Proxy = json.RawMessage("{}")
			}
			if len(out.Connect) == 0 {
				out.Connect = json.RawMessage("{}")
			}
			return &txnResultOut{Service: out}
		}
	case op.Check != nil:
		if strings.HasPrefix(op.Check.Verb, "delete") {
			return nil
		}
		if c := t.check(op.Check.Check.Node, op.Check.Check.CheckID); c != nil {
			j := consuljson.FromCheck(c)
			j.Node = op.Check.Check.Node
			return &txnResultOut{Check: &txnCheckResult{Check: j, ServiceTags: c.ServiceTags}}
		}
	}
	return nil
}

// sessionPrecheck is a session delete's precondition: the session exists.
func (h *handler) sessionPrecheck(ctx context.Context, op *txnSessionOp) string {
	if op.Verb != "delete" {
		return fmt.Sprintf("failed to delete session: unknown Session verb %q", op.Verb)
	}
	_, s, err := h.store.SessionInfo(ctx, kv.QueryOptions{}, op.Session.ID)
	if err != nil {
		return err.Error()
	}
	if s == nil {
		return fmt.Sprintf("session %q doesn't exist", op.Session.ID)
	}
	return ""
}
