// Package forward owns the server port and request forwarding. Servers
// listen once on the server port and split connections by their first
// byte between Raft and forwarded requests (Consul's RPC multiplexing).
// Router gives the HTTP API one KV/session store on every agent: local
// answers where this agent may give them, otherwise the request travels
// to a server (from a client) or to the Raft leader (from a follower).
// A forwarded request carries its caller's context across the wire: the
// deadline (Request.Timeout), the cancellation (a Cancel call naming the
// request) and the ACL token (kv.Token), so that nothing a caller started
// outlives it on a server.
//
// Router also rides out faults (hold.go): while there is no leader, or a
// server does not answer, a request is tried again until the hold time
// (Consul's rpc_hold_timeout) runs out, each try bounded so that a paused
// or cut-off server costs one try, not the caller's whole timeout. Writes
// carry a write ID (kv.WithWriteID), so a write whose answer was lost is
// sent again safely; one that may have been applied when the hold runs out
// fails with kv.ErrOutcomeUnknown, never "no cluster leader".
//
// A server checks the token of each request it serves for another agent
// (enforce.go), so that the server port is no way around the HTTP API's
// ACLs; the agent's own requests are marked Internal and carry the agent
// token when forwarded.
//
// forward imports kv and agent/acl (the Authorizer contract) and nothing
// above them; it must not import dns, template or registrator.
package forward
