// Package dns answers cluster-domain queries from the local catalog and
// forwards the rest to the recursors. It never imports agent or kv; it
// reads through Catalog, which it declares itself.
//
// # Names
//
// Every name below is answered under the domain ("cluster." by default)
// and, when configured, under the alternative domain (e.g. Consul's
// "consul."); <dc>. may be inserted before the domain in Consul's forms.
//
//	<svc>.cluster                    A/AAAA: the service VIP, else its healthy instances (Docker Swarm);
//	                                 SERVFAIL while its VIP is not known yet (Service.Hold)
//	tasks.<svc>.cluster              A/AAAA: always the healthy instances (Docker Swarm)
//	<svc>.service[.<dc>].consul      A/AAAA and SRV of the healthy instances (Consul)
//	<tag>.<svc>.service.consul       the same, only instances with the tag (Consul)
//	_<svc>._<tag>.service.consul     RFC 2782 form; _tcp means any tag (Consul)
//	<node>.node[.<dc>].consul        A/AAAA of a node (Consul)
//	<hex-ip>.addr[.<dc>].consul      A/AAAA of the encoded address; SRV targets use it (Consul)
//	<reversed-ip>.in-addr.arpa       PTR of node, instance and VIP addresses
//
// SRV answers carry Consul's targets (<node>.node.<dc>.<domain>, or
// <hex-ip>.addr.<dc>.<domain> when the instance has its own address) with
// their A/AAAA records in the additional section. Only passing instances
// are answered (warning too unless Config.OnlyPassing); answers rotate
// round robin per query.
//
// # How a query is answered
//
// One goroutine, owned by Server.Run, watches the Catalog (level
// triggered: index + memdb.WatchSet) and, on every change, precomputes an
// immutable zone: a map from each name to its record sets. A query
// lower-cases its name, looks it up in the current zone, copies the records
// rotated into a pooled reply with the question's name as owner, trims it
// to the client's size (TC over UDP, everything over TCP) and writes it.
// Names outside the domains are forwarded to the recursors, or REFUSED
// when there are none.
package dns
