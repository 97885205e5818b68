package httpapi

import (
	"context"
	"errors"
	"github.com/cairn-dev/cairn/agent/acl"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/cairn-dev/cairn/agent/preparedquery"
	"github.com/cairn-dev/cairn/kv"
)

// PreparedQueries is what the HTTP API needs for Consul's prepared
// queries (/v1/query): a *preparedquery.Registry. Called from request
// goroutines, concurrently; List and Get block for ?index= like the KV
// reads.
type PreparedQueries interface {
	Create(ctx context.Context, q preparedquery.Query) (string, error)
	Update(ctx context.Context, q preparedquery.Query) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context, o kv.QueryOptions) (kv.QueryMeta, []*preparedquery.Query, error)
	Get(ctx context.Context, o kv.QueryOptions, id string) (kv.QueryMeta, *preparedquery.Query, error)
	Resolve(ctx context.Context, idOrName string) (*preparedquery.Query, error)
	Execute(ctx context.Context, idOrName string, opts preparedquery.ExecOptions) (*preparedquery.Result, error)
}

var errNoQueries = &httpError{code: http.StatusInternalServerError, msg: "this agent has no prepared queries"}

// queryError maps the registry's errors: 400 for a refused definition,
// 404 (Consul's "Query not found") for a missing query.
func queryError(err error) error {
	switch {
	case errors.Is(err, preparedquery.ErrInvalid):
		return badRequest("%s", strings.TrimPrefix(err.Error(), preparedquery.ErrInvalid.Error()+": "))
	case errors.Is(err, preparedquery.ErrNotFound):
		return &httpError{code: http.StatusNotFound, msg: preparedquery.ErrNotFound.Error()}
	}
	return err
}

// preparedQueries serves /v1/query: GET lists every query, POST creates
// one and answers {"ID": ...}.
func (h *handler) preparedQueries(c *call) error {
	if h.queries == nil {
		return errNoQueries
	}
	if c.r.Method == http.MethodPost {
		var q preparedquery.Query
		if err := decodeJSONBody(c, &q, "a prepared query definition"); err != nil {
			return err
		}
		if err := checkQueryWrite(c, &q); err != nil {
			return err
		}
		id, err := h.queries.Create(c.ctx, q)
		if err != nil {
			return queryError(err)
		}
		return writeJSON(c.w, http.StatusOK, struct{ ID string }{id})
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	meta, qs, err := h.queries.List(c.ctx, o)
	if err != nil {
		return err
	}
	qs = filterQueries(c, qs)
	setMeta(c.w, meta, o)
	if qs == nil {
		qs = []*preparedquery.Query{}
	}
	return writeFiltered(c, qs)
}

// preparedQuery serves /v1/query/<id> (GET, PUT, DELETE),
// /v1/query/<id-or-name>/execute and /v1/query/<id-or-name>/explain.
func (h *handler) preparedQuery(c *call) error {
	if h.queries == nil {
		return errNoQueries
	}
	id, action, _ := strings.Cut(c.arg, "/")
	if id == "" {
		return badRequest("Missing query ID: use /v1/query/<id>")
	}
	switch action {
	case "":
	case "execute", "explain":
		if c.r.Method != http.MethodGet {
			return &methodNotAllowedError{method: c.r.Method, allow: []string{http.MethodOptions, http.MethodGet}}
		}
		if action == "execute" {
			return h.preparedQueryExecute(c, id)
		}
		q, err := h.queries.Resolve(c.ctx, id)
		if err != nil {
			return queryError(err)
		}
		// Consul's PreparedQuery.Explain: query read on its prefix.
		if len(filterQueries(c, []*preparedquery.Query{q})) == 0 {
			return c.denied(acl.Query, q.Name, acl.Read)
		}
		return writeJSON(c.w, http.StatusOK, struct{ Query *preparedquery.Query }{q})
	default:
		return &httpError{code: http.StatusNotFound, msg: "no API endpoint at " + c.r.URL.Path + "; use /v1/query/<id>, /v1/query/<id>/execute or /v1/query/<id>/explain"}
	}
	switch c.r.Method {
	case http.MethodGet:
		o, err := readOptions(c.query)
		if err != nil {
			return err
		}
		meta, q, err := h.queries.Get(c.ctx, o, id)
		if err != nil {
			return err
		}
		if q == nil {
			return queryError(preparedquery.ErrNotFound)
		}
		// Consul's PreparedQuery.Get: a query the token may not read is
		// a 403, not a 404.
		if len(filterQueries(c, []*preparedquery.Query{q})) == 0 {
			return c.denied(acl.Query, q.Name, acl.Read)
		}
		setMeta(c.w, meta, o)
		return writeJSON(c.w, http.StatusOK, []*preparedquery.Query{q})
	case http.MethodPut:
		var q preparedquery.Query
		if err := decodeJSONBody(c, &q, "a prepared query definition"); err != nil {
			return err
		}
		q.ID = id
		if err := h.checkQueryExisting(c, id); err != nil {
			return err
		}
		if err := checkQueryWrite(c, &q); err != nil {
			return err
		}
		if err := h.queries.Update(c.ctx, q); err != nil {
			return queryError(err)
		}
	case http.MethodDelete:
		if err := h.checkQueryExisting(c, id); err != nil {
			return err
		}
		if err := h.queries.Delete(c.ctx, id); err != nil {
			return queryError(err)
		}
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// queryExecuteOut is api.PreparedQueryExecuteResponse.
type queryExecuteOut struct {
	Service    string
	Nodes      []consuljson.ServiceEntry
	DNS        preparedquery.DNSOptions
	Datacenter string
	Failovers  int
}

// preparedQueryExecute serves GET /v1/query/<id-or-name>/execute with
// ?near= (a node, _agent or _ip: the caller's address) and ?limit=.
func (h *handler) preparedQueryExecute(c *call, idOrName string) error {
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	limit, _, err := uintParam(c.query, "limit", "give the most instances to return, e.g. ?limit=3")
	if err != nil {
		return err
	}
	if has(c.query, "connect") && c.query.Get("connect") != "false" {
		return badRequest("?connect asks for Connect-capable instances, and cairn has no Connect service mesh; drop ?connect")
	}
	opts := preparedquery.ExecOptions{Near: c.query.Get("near"), Limit: int(limit)}
	if host, _, err := net.SplitHostPort(c.r.RemoteAddr); err == nil {
		opts.SourceIP, _ = netip.ParseAddr(host)
	}
	res, err := h.queries.Execute(c.ctx, idOrName, opts)
	if err != nil {
		return queryError(err)
	}
	out := queryExecuteOut{Service: res.Service, Nodes: []consuljson.ServiceEntry{}, DNS: res.DNS, Datacenter: res.Datacenter, Failovers: res.Failovers}
	// Consul's PreparedQuery.Execute: the answer is filtered as a health
	// read is (node and service read).
	for _, in := range filterInstances(c, res.Instances) {
		out.Nodes = append(out.Nodes, consuljson.FromHealth(in))
	}
	setMeta(c.w, kv.QueryMeta{Index: res.Index, KnownLeader: true}, o)
	return writeJSON(c.w, http.StatusOK, out)
}

// checkQueryWrite is Consul's check on a prepared query written: query
// write on its name (GetACLPrefix); an unnamed query needs none.
func checkQueryWrite(c *call, q *preparedquery.Query) error {
	if q.Name == "" {
		_, err := c.authorizer()
		return err
	}
	return c.allow(acl.Query, q.Name, acl.Write)
}

// checkQueryExisting is the other half of Consul's check on an update
// or delete: query write on the stored query's name too.
func (h *handler) checkQueryExisting(c *call, id string) error {
	if c.aclOff() {
		return nil
	}
	_, old, err := h.queries.Get(c.ctx, kv.QueryOptions{}, id)
	if err != nil || old == nil {
		return err
	}
	return checkQueryWrite(c, old)
}

// filterQueries is Consul's filterPreparedQueries: query read on a
// named query's name; an unnamed one only for a token that may write
// the ACL system (management). Tokens stored in queries are redacted for
// everyone else.
func filterQueries(c *call, qs []*preparedquery.Query) []*preparedquery.Query {
	if c.aclOff() {
		return qs
	}
	mgmt := c.can(acl.ACL, "", acl.Write)
	qs = filterList(c, qs, func(q *preparedquery.Query) bool {
		if q.Name == "" {
			return mgmt
		}
		return c.can(acl.Query, q.Name, acl.Read)
	})
	if !mgmt {
		for i, q := range qs {
			if q.Token != "" {
				r := *q
				r.Token = redactedToken
				qs[i] = &r
			}
		}
	}
	return qs
}

// redactedToken is Consul's stand-in for a secret a token may not see.
const redactedToken = "<hidden>"
