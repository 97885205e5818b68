package agent

import (
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/preparedquery"
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
		Store:   w.routerFor(),
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
