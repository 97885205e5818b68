// Package preparedquery owns Consul's prepared queries (/v1/query and the
// DNS form <name>.query.<domain>): their definitions, kept in the
// replicated KV store under the reserved prefix _cairn/query/ (one key
// per query, and one per name so that names stay unique in one
// transaction), their validation, the rendering of templates
// (name_prefix_match, with an optional Regexp), and their execution
// against the local catalog: health (OnlyPassing, IgnoreCheckIDs), tags
// (with "!tag" negation), node and service meta, the ?near= order from
// network coordinates, and a limit.
//
// cairn is one datacenter: Service.Failover (NearestN, Datacenters,
// Targets) is stored and returned but never has another datacenter to
// fail over to, so Failovers is always 0. Session-linked queries are
// checked to name an existing session when written, and a query whose
// session has ended is treated as deleted (and deleted) the next time it
// is read, which is what Consul's session invalidation does eagerly.
//
// It reads the kv store and the catalog through the small interfaces it
// declares (Store, Catalog); it imports kv, agent/catalog and
// agent/membership for their types, and never agent, httpapi, dns,
// template or registrator.
package preparedquery
