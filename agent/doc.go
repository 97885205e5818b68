// Package agent wires cairn's parts into one running agent and owns their
// lifecycle. It validates the Config that cmd/cairn builds from flags and
// config files, then builds the parts (wiring.go), one constructor per
// part in its own file: the kv store and the server port (store.go), the
// HTTP API (httpserver.go), membership and the leave (membership.go), the
// catalog and its check runner (catalog.go), VIPs and their kernel data
// plane (vips.go), DNS (dns.go) and in-process templates (template.go). They run in layers (parts.go), started
// bottom-up and stopped top-down: store, HTTP API, membership, catalog,
// services. Adding a part is a constructor and one entry in
// wiring.build.
//
// agent has no behaviour of its own: the store is kv, the API is
// agent/httpapi, the catalog is agent/catalog, DNS is dns, templates are
// template, VIPs are agent/vip. It may import any of them; none of them
// may import agent (deps_test.go at the repository root pins that).
// Adapters between those packages live here.
package agent
