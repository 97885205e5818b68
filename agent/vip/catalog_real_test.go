package vip

import "github.com/cairn-dev/cairn/agent/catalog"

// The real catalog is what the agent passes as Catalog.
var _ Catalog = (*catalog.Catalog)(nil)
