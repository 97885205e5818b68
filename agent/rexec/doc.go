// Package rexec runs the commands of Consul's remote exec (`consul exec`,
// `cairn exec`) on this agent, with Consul's protocol: the CLI stores a
// job under <prefix>/<session>/job in the KV store and fires the user
// event "_rexec" with {"Prefix", "Session"}; each agent that keeps the
// event reads the job, acknowledges under <prefix>/<session>/<node>/ack,
// streams the output in chunks of at most 4 KiB under .../out/%05x (an
// empty chunk is a heartbeat) and writes the exit code under .../exit,
// every key locked by the session so nothing is written once the CLI
// has ended it.
//
// Agents run jobs only when configured with disable_remote_exec = false:
// the default (true, as in Consul) ignores the event and logs why.
//
// It imports kv only; the agent feeds it the events.
package rexec
