// Package dockertest runs tests against the real Docker engine of the
// machine: it owns the test image (a FROM scratch image around the static
// testserver program, built once per content hash), and the containers,
// networks, Swarm services and the engine-socket proxy that a test makes,
// all named cairn-t<pid>-<test>-..., labelled cairn.test=t<pid> and
// removed in t.Cleanup even when the test fails (a later run also sweeps
// what a crashed run left behind).
//
// NeedDocker is the entry point: it skips a test when no engine answers,
// and fails it under CI=true (systemtest.Need). Waiting is WaitFor, which
// polls a condition against a deadline and reports the last state seen.
//
// dockertest knows nothing of registrator's model; it imports only the
// engine's client and systemtest, never agent, kv, dns or template.
package dockertest
