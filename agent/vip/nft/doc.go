// Package nft is the nftables VIP data plane: it implements vip.Dataplane
// with github.com/google/nftables (netlink, no nft binary) in the shape of
// kube-proxy's nftables mode, for kernels without IPVS.
//
// It owns exactly one table (family ip, named by Config.Table, "cairn" by
// default) and never reads or writes anything outside it. In that table:
//
//	chain nat-prerouting  { type nat hook prerouting priority dstnat; jump services }
//	chain nat-output      { type nat hook output priority dstnat; jump services }
//	chain nat-postrouting { type nat hook postrouting priority srcnat; meta mark & MARK != 0 meta mark set mark & ~MARK masquerade fully-random }
//	chain filter-prerouting { type filter hook prerouting priority dstnat - 10; ip daddr . meta l4proto . th dport vmap @no-endpoint-services }
//	chain filter-output     { type filter hook output priority dstnat - 10; same }
//	chain services        { ip daddr . meta l4proto . th dport vmap @service-ips }
//	chain reject-chain    { meta l4proto tcp reject with tcp reset; reject }
//	map service-ips          { VIP . proto . port : goto svc-VIP-proto-port }
//	map no-endpoint-services { VIP . proto . port : goto reject-chain }
//	chain svc-VIP-proto-port { meta mark set mark | MARK numgen random mod N vmap { 0 : goto ep-…, … } }
//	chain ep-VIP-proto-port-ADDR-PORT { dnat to ADDR:PORT }
//
// Every connection through a VIP is marked and masqueraded on the way out
// (as Swarm's routing mesh does), so replies come back through the node
// that balanced it even when the backend sits behind another node; the
// backend sees the node's address, not the client's.
//
// Chain names derive from the VIP, protocol and port only, so a restarted
// agent recognises what an earlier run left. Every rule carries a comment
// that spells what it does; the comments are the fingerprint Sync compares
// to find rules changed behind its back. IPv4 only: an IPv6 VIP or backend
// is refused with an error.
//
// It may import agent/vip for the contract's types and nothing else of
// cairn's.
package nft
