// Package agent wires cairn's parts into one running agent and owns their
// lifecycle: it validates the Config that cmd/cairn builds from flags and
// config files, prepares the data dir (node ID, lock), opens the kv store,
// joins the cluster (agent/membership), keeps the service catalog
// (agent/catalog, replicated over membership's gossip) with its check
// runner (agent/checks), serves the HTTP API from agent/httpapi and DNS
// from dns (dns.go adapts the catalog to dns.Catalog), renders -template
// templates in-process (template.go implements template.Source over the
// store and the catalog), runs everything in one errgroup and stops it
// in reverse order.
//
// agent has no behaviour of its own: the store is kv, the API is
// agent/httpapi, the catalog is agent/catalog, DNS is dns, templates are
// template, and later vip. It
// may import any of them; none of them may import agent (deps_test.go at
// the repository root pins that). Adapters between those packages live
// here.
package agent
