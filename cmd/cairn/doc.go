// Cairn is a Consul-compatible service-discovery agent in one binary.
//
// Usage:
//
//	cairn agent [flags]     run an agent (Consul's flags; -dev for a throwaway server)
//	cairn kv <subcommand>   read and write the KV store, as `consul kv` does
//	cairn version           print the version
//
// This command stays thin: it turns flags and config files into an
// agent.Config and runs it, or calls the HTTP API through the official
// Consul client. Behaviour lives in the packages it imports.
package main
