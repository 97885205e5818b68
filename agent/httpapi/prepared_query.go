package httpapi

import (
	"context"
	"errors"
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
		setMeta(c.w, meta, o)
		return writeJSON(c.w, http.StatusOK, []*preparedquery.Query{q})
	case http.MethodPut:
		var q preparedquery.Query
		if err := decodeJSONBody(c, &q, "a prepared query definition"); err != nil {
			return err
		}
		q.ID = id
		if err := h.queries.Update(c.ctx, q); err != nil {
			return queryError(err)
		}
	case http.MethodDelete:
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
	for _, in := range res.Instances {
		out.Nodes = append(out.Nodes, consuljson.FromHealth(in))
	}
	setMeta(c.w, kv.QueryMeta{Index: res.Index, KnownLeader: true}, o)
	return writeJSON(c.w, http.StatusOK, out)
}
