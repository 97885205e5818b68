// Package nft is the nftables VIP data plane: it implements vip.Dataplane
// with github.com/google/nftables (netlink, no nft binary) in the shape of
// kube-proxy's nftables mode, for kernels without IPVS.
//
// It owns exactly one table (family ip, named by Config.Table, "cairn" by
// default) and never reads or writes anything outside it. In that table:
//
//	chain nat-prerouting    { type nat hook prerouting priority dstnat; jump services }
//	chain nat-output        { type nat hook output priority dstnat; jump services }
//	chain services          { ip daddr . meta l4proto . th dport vmap @service-ips }
//	chain balance-N-S       { meta mark set mark | MARK
//	                          dnat to ip daddr . meta l4proto . th dport . numgen random mod N map @service-backends-S }
//	chain nat-postrouting   { type nat hook postrouting priority srcnat;
//	                          meta mark & MARK != 0 meta mark set mark & ~MARK masquerade fully-random }
//	chain filter-prerouting { type filter hook prerouting priority dstnat - 10;
//	                          ip daddr . meta l4proto . th dport @no-endpoint-services reject (tcp reset for TCP) }
//	chain filter-output     { type filter hook output priority dstnat - 10; the same }
//	map service-ips          { VIP . proto . port : goto balance-N-S }   (N = its number of backends)
//	map service-backends-S   { VIP . proto . port . i : ADDR . PORT }    (i = 0 … N-1)
//	set no-endpoint-services { VIP . proto . port }                      (ports with no backends)
//
// S is one of 16 shards, chosen by a hash of the VIP: the kernel lists a
// set in time quadratic in its size, and reading one map of 100k backends
// at Sync took 3.7 s.
//
// The per-service state is map elements only; the chains are fixed, plus
// one balance-N-S chain per backend count and shard in use, shared by all
// VIP ports of shard S with N backends. So an Update is a handful of element changes
// (in three netlink transactions, so that no packet meets a chain or a
// backend missing in its generation: builder.commit), whatever the number of VIPs: adding, removing or
// replacing a backend touches its own element (each backend keeps its
// index where it can) and, when N changes, the port's service-ips
// element. kube-proxy has a chain per service and per endpoint instead;
// here the kernel would re-validate all of them on every commit that
// adds a jump (linear in the table: 250 ms at 10k services measured).
//
// Every connection through a VIP is marked and masqueraded on the way out
// (as Swarm's routing mesh does), so replies come back through the node
// that balanced it even when the backend sits behind another node; the
// backend sees the node's address, not the client's.
//
// Names are fixed or derived from the backend count, so a restarted agent
// recognises what an earlier run left and adopts it without rewriting:
// conntrack keeps established connections, and the rules stay. Every rule
// carries a comment that spells what it does; the comments are the
// fingerprint Sync compares to find chains changed behind its back.
// IPv4 only: an IPv6 VIP or backend is refused with an error.
//
// It may import agent/vip for the contract's types and nothing else of
// cairn's.
package nft
