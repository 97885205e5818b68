// Package catalog owns cairn's service catalog: this agent's services and
// health checks (registered through Consul's agent API, kept in the data
// dir), and a replica of every other agent's, so that every catalog, health
// and DNS read is answered from local memory and never leaves the node.
//
// Replication (DESIGN.md, "two kinds of state"): each agent is the only
// writer of what it registered (its own node, its services and checks, and
// the external nodes registered through it with /v1/catalog/register). It
// numbers each change of that whole state with a version that only grows,
// across restarts too (the boot time in milliseconds shifted left by 20,
// plus a counter, never below a high-water mark reserved in the data dir),
// and spreads the state over gossip: small states as a broadcast that every
// receiver passes on (epidemic), large ones over TCP to each member, and
// everything again in memberlist's periodic push/pull (anti-entropy). A
// state replaces another only when its version is higher, so a stale copy
// relayed late never wins and a deregistered service is never resurrected.
//
// Node health comes from membership, not from the owner: an agent's node
// carries Consul's "serfHealth" check, passing while the member is alive,
// critical at once on every agent when it fails (so its instances stop
// being answered as healthy), and its entries are purged when membership
// reaps it (reconnect_timeout). A member that leaves gracefully is removed
// at once.
//
// Reads have the shape of the rest of cairn's state: an index and a watch
// set (go-memdb). The index is a counter local to this agent that only
// grows, and the index of an answer moves only when that answer can have
// changed: each service name has its own, so a change to "db" does not wake
// the watchers of "web".
//
// The catalog decides which local checks exist; running them (HTTP, TCP,
// script, TTL expiry) is the job of a Runner it is given (agent/checks,
// adapted by the agent), which reports results back through UpdateCheck and
// DeregisterService. A check's definition is agent/checks' Definition, the
// one type the HTTP API decodes into, the catalog persists and the runner
// runs: it is the only part of agent/checks the catalog uses. Likewise a
// member's status is agent/membership's Status, the one definition of it.
//
// catalog reaches the rest of the agent only through the interfaces it
// declares (Members, Gossip, Runner): it must not import agent, kv, dns,
// template or registrator.
package catalog
