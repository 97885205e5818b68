// Package vip gives every service in VIP mode one virtual IP that the
// kernel load-balances over the service's healthy instances, as Docker
// Swarm's routing mesh does. It owns the Dataplane contract (dataplane.go)
// that the kernel back ends implement (agent/vip/ipvs, agent/vip/nft),
// the allocation of addresses from -vip-cidr through the Raft store, and
// the reconciler that turns the catalog's changes into data plane
// updates. It must not import agent, dns, template, registrator or cmd;
// it reads the catalog through Catalog and the KV store through Store.
//
// The parts, which VIPs runs together as the agent's one VIP part:
//
//   - Table (every agent): the allocations, name -> VIP, kept in memory
//     by one blocking list of the KV prefix _cairn/vip/ at a time, with
//     an index and a watch channel for DNS, the HTTP API and the
//     reconciler.
//   - Allocator (servers; acts only on the Raft leader, which has the
//     whole catalog): gives a service with instances, not opted out
//     with Meta endpoint_mode=dnsrr, the next free address of -vip-cidr
//     (never its network or broadcast address) in one transaction that
//     checks that neither the service's key nor the address's key
//     exists, so two allocators can never hand out one address twice.
//     A service keeps its VIP while it has instances, healthy or not,
//     and for Grace (default 1h) after the last one is gone, so a
//     redeploy keeps its address; then the VIP is released (deleted at
//     the index it was read at). Opting out with dnsrr releases at once.
//     A full range is an error on that service only: recorded in the
//     store (every agent's table shows it in /v1/agent/self and logs it
//     once), counted, and listed in Status. The allocator also decides
//     each VIP's target ports, once (pin), and keeps them in the record.
//   - Reconciler (agents with a data plane): a Sync at start (adopts
//     what an earlier run left), an Update naming only the services
//     the catalog's change feed or the table changed, a Sync every
//     Resync (default 1m) that repairs rules changed behind its back,
//     and a Flush on leave. Only passing instances are backends; a
//     service whose last instance is gone keeps its ports, refusing
//     connections, until its VIP is released.
//
// A VIP accepts the service's target ports, decided once by the leader
// and kept in the allocation record so that every node programs the
// same ones (pin: Meta vip_port on the instances, else their most
// common registered Port, ties to the lowest; protocol from Meta
// vip_proto, else tcp; changed only when that Meta changes), and
// forwards each to every passing instance's registered Address:Port.
package vip
