package httpapi

import (
	"net/http"

	"github.com/cairn-dev/cairn/blocking"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// caRootList is Consul's api.CARootList.
type caRootList struct {
	ActiveRootID string
	TrustDomain  string
	Roots        []struct{}
}

// connectCARoots serves GET /v1/agent/connect/ca/roots and
// /v1/connect/ca/roots. cairn has no Connect service mesh and so no
// certificate authority: it answers Consul's shape with no root, so that
// tools that only wait for the endpoint to answer 200 start, and tools
// that need a root see at once that there is none (rather than a 404
// they would retry).
func (h *handler) connectCARoots(c *call) error {
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	// The list never changes: a blocking query waits out its wait.
	idx, err := blocking.Run(c.ctx, blocking.Query{MinIndex: o.MinIndex, Wait: o.MaxWait}, func(memdb.WatchSet) (uint64, error) { return 1, nil })
	if err != nil {
		return err
	}
	setMeta(c.w, kv.QueryMeta{Index: idx, KnownLeader: true}, o)
	return writeJSON(c.w, http.StatusOK, caRootList{Roots: []struct{}{}})
}
