// Package vip gives every service in VIP mode one virtual IP that the
// kernel load-balances over the service's healthy instances, as Docker
// Swarm's routing mesh does. It owns the Dataplane contract (dataplane.go)
// that the kernel back ends implement (agent/vip/ipvs, agent/vip/nft),
// the allocation of addresses from -vip-cidr through the Raft store, and
// the reconciler that turns the catalog's changes into data plane
// updates. It must not import agent, dns, template or registrator.
package vip
