// Cairn is a Consul-compatible service-discovery agent in one binary.
//
// Usage:
//
//	cairn agent [flags]                 run an agent (Consul's flags; -dev for a throwaway server)
//	cairn kv <subcommand>               read and write the KV store, as `consul kv` does
//	cairn members [-detailed]           list the cluster's members, as `consul members`
//	cairn join ADDRESS...               make the agent join a cluster
//	cairn leave                         make the agent leave gracefully and stop
//	cairn force-leave NODE              move a failed member to "left"
//	cairn operator raft list-peers      show the Raft servers
//	cairn template -template IN:OUT:CMD render consul-template templates and keep them current
//	cairn keygen                        print a new gossip encryption key
//	cairn version                       print the version
//
// This command stays thin: it turns flags and config files into an
// agent.Config and runs it, or calls the HTTP API through the official
// Consul client. Behaviour lives in the packages it imports.
package main
