package httpapi

import (
	"testing"

	"github.com/cairn-dev/cairn/agent/catalog"
)

// NodeOneCatalog is the catalog of one agent, "node-1" at 10.0.0.1, that
// the handler's tests and benchmarks read (exported for the external
// test package); opts change its config first.
func NodeOneCatalog(tb testing.TB, opts ...func(*catalog.Config)) *catalog.Catalog {
	tb.Helper()
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.NodeID, cfg.Address = "node-1", "0d1c8a1e-6a35-4b2c-9f0e-2f4b1c3d5e6f", "10.0.0.1"
	for _, o := range opts {
		o(&cfg)
	}
	cat, err := catalog.New(cfg)
	if err != nil {
		tb.Fatalf("catalog.New: %v", err)
	}
	return cat
}
