// Package template renders consul-template compatible templates and keeps
// their files current: the same functions with the same data shapes (so the
// same template gives the same bytes), the same -template "in:out:cmd" and
// HCL template{} configuration, wait (quiescence) timers, atomic writes,
// backups and commands, plus cairn's check command that validates a result
// before it stays in place.
//
// It is split the way consul-template is: a dependency (what a template
// function read: a service, a key, a prefix...) is watched by a view with
// blocking queries, a template is executed against what the views hold, and
// the runner renders (writes, checks, runs commands) what changed.
//
// Data comes from a Source, which this package declares: HTTPSource talks to
// any Consul-compatible agent (cairn over one HTTP/2 cleartext connection,
// real Consul over HTTP/1.1); the agent passes an in-process Source that makes
// no connection at all. template never imports agent, kv, dns or registrator.
package template
