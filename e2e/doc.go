// Package e2e tests the built cairn binary as users run it: real
// processes on free loopback ports, stopped with real signals, queried
// with the official Consul client and the `cairn kv` command itself.
//
// TestMain builds cmd/cairn once per run (CAIRN_E2E_BIN=path uses a
// binary built elsewhere instead). The tests are skipped under -short.
// e2e imports nothing of cairn's; it only runs the binary.
package e2e
