// Package checks runs the health checks an agent runs itself, with
// Consul's semantics (hashicorp/consul agent/checks/check.go):
//
//   - HTTP: a request every Interval; 2xx is passing, 429 Too Many Requests
//     is warning, anything else (or no answer within Timeout) is critical.
//     The output is "HTTP GET <url>: 200 OK Output: <body>".
//   - TCP: a connection every Interval; "TCP connect <addr>: Success" is
//     passing, a failed connection is critical.
//   - script (Args): a program run every Interval, without a shell; exit 0
//     is passing, 1 is warning, anything else is critical. The output is
//     what it wrote to stdout and stderr. Only when the agent runs with
//     -enable-script-checks.
//   - gRPC (GRPC): grpc.health.v1.Health/Check every Interval, on a new
//     connection each time; SERVING is passing, anything else critical.
//   - Docker (DockerContainerID with Args): the command run inside the
//     container every Interval through the engine's exec API (Config.Docker);
//     exit codes and output as for a script check, and like one it needs
//     -enable-script-checks.
//   - TTL: the application reports its own status (Runner.TTL, behind
//     /v1/agent/check/pass, warn, fail and update); a check not updated
//     within TTL goes critical with the output "TTL expired".
//
// A Runner owns the running checks. The caller (agent/catalog) adds and
// removes Definitions and learns of results through the Sink it passes in
// Config: UpdateCheck when a check's status or output changes,
// DeregisterService when a service's check has been critical for longer
// than its DeregisterCriticalServiceAfter. The Runner keeps no catalog of
// its own: it reports changes and forgets them.
//
// Lifecycle, as everywhere in cairn: New starts nothing; Run(ctx) runs
// every check until ctx ends and waits for every goroutine it started.
//
// checks knows nothing of the catalog, the HTTP API, KV, DNS or templates:
// it must not import agent, kv, dns, template or registrator, and it
// declares the interfaces it needs from its user (Sink, DockerExec).
package checks
