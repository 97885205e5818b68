package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/preparedquery"
	"github.com/cairn-dev/cairn/dns"
)

// queryRegistry returns the prepared queries (stored through the
// replicated store, executed against this agent's catalog), made once
// for the HTTP API and DNS.
func (w *wiring) queryRegistry() (*preparedquery.Registry, error) {
	if w.queries != nil {
		return w.queries, nil
	}
	ml := w.ml
	r, err := preparedquery.New(preparedquery.Config{
		Store:   w.routerFor().Internal(), // the agent's own keys (_cairn/query/)
		Catalog: w.cat,
		Coordinates: func() []membership.NodeCoordinate {
			_, cs := ml.Coordinates(nil)
			return cs
		},
		NodeName:   w.cfg.NodeName,
		Datacenter: w.cfg.Datacenter,
	})
	if err != nil {
		return nil, err
	}
	w.queries = r
	return r, nil
}

// dnsQueries adapts the prepared queries to dns.Queries.
type dnsQueries struct {
	r *preparedquery.Registry
	// view is DNS's ACL view (dnsCatalog.view); nil: everything.
	view func() acl.Authorizer
}

func (q dnsQueries) Query(ctx context.Context, name string, source netip.Addr) ([]dns.Instance, time.Duration, bool, error) {
	res, err := q.r.Execute(ctx, name, preparedquery.ExecOptions{SourceIP: source})
	if errors.Is(err, preparedquery.ErrNotFound) {
		return nil, 0, false, dns.ErrNoQuery
	}
	if err != nil {
		return nil, 0, false, err
	}
	insts := res.Instances
	if q.view != nil {
		// DNS's token's view, as for the catalog's names.
		insts, _ = visible(q.view(), insts, nil)
	}
	out := make([]dns.Instance, 0, len(insts))
	for _, in := range insts {
		if inst, reason := dnsInstance(in); reason == "" {
			out = append(out, inst)
		}
	}
	ttl, ok := res.Query.DNSTTL()
	return out, ttl, ok, nil
}
