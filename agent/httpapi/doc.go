// Package httpapi serves Consul's HTTP API for the key/value store,
// transactions, sessions, status, agent/self, the cluster endpoints
// (agent members, join, leave, force-leave, operator raft configuration),
// the service catalog and health (/v1/catalog, /v1/health) and this
// agent's own services and checks (/v1/agent/service*, /v1/agent/check*):
// Consul's paths, query parameters, headers, JSON field names and status
// codes, so that the official client github.com/hashicorp/consul/api works
// against cairn unchanged. Blocking queries (?index=&wait=) are answered by
// the store's own watch sets; this package only translates HTTP to Store
// and Cluster calls.
//
// It owns the HTTP translation and nothing else: it reads and writes
// through the Store, Cluster and Catalog interfaces it declares (a
// *kv.Server on servers, a forwarder on client agents; the agent's gossip
// membership; the agent's *catalog.Catalog, whose types it uses).
// It never imports dns, template or registrator, and never imports agent.
package httpapi
