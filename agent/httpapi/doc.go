// Package httpapi serves Consul's HTTP API for the key/value store,
// transactions, sessions, status and agent/self: Consul's paths, query
// parameters, headers, JSON field names and status codes, so that the
// official client github.com/hashicorp/consul/api works against cairn
// unchanged. Blocking queries (?index=&wait=) are answered by the store's
// own watch sets; this package only translates HTTP to Store calls.
//
// It owns the HTTP translation and nothing else: it reads and writes
// through the Store interface it declares (a *kv.Server on servers, a
// forwarder on client agents). It never imports dns, template or
// registrator, and never imports agent.
package httpapi
