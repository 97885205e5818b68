// Package registrator turns Docker containers and Swarm tasks into service
// registrations, as gliderlabs/registrator does (same SERVICE_* labels,
// same service IDs, same flags through cmd/registrator), without losing
// events. It reads Docker through Engine (DockerEngine wraps
// github.com/moby/moby/client) and writes through Registry (the Consul and
// ConsulKV backends here; the agent's in-process catalog adapter lives in
// package agent). It never imports agent, kv, dns, template or cmd
// (deps_test.go pins that).
//
// # Sync
//
// Run subscribes to the engine's events first, then lists every container
// and reconciles each (registrator's own rule: subscribe, then list). Each
// event queues its container; a queue coalesces per container (bounded by
// the number of containers; adding never blocks the event reader) and
// hands one container to one worker at a time, so a container's events
// apply in order. A worker re-inspects the container and makes the
// registry hold exactly the services it should have now (level-triggered:
// the final state is what counts, so coalescing loses nothing). A broken
// event stream (engine restart) is resubscribed with backoff and followed
// by a full resync; -resync N adds a periodic one. A full resync also
// registers again what the registry lost. On start, registrations of this
// host (IDs <hostname>:<container>:<port>[:udp]) that no container
// accounts for are removed, so nothing stale survives a registrator or
// host crash; -cleanup repeats that sweep after every resync. A failed
// registry write is retried with backoff (1s to 1m).
//
// # Service model (upstream's rules)
//
//   - Ports: Config.ExposedPorts (as if published on the host at the same
//     number: right for --net=host), overwritten by NetworkSettings.Ports.
//     A port not published on the host is skipped unless internal.
//   - Host address: the binding's HostIp; 0.0.0.0 (or ::) becomes the
//     hostname's address (its first non-loopback IPv4 one); -ip overrides;
//     with a user-defined network mode, the container's address on that
//     network (upstream's overlay rule). -internal registers the
//     container's address and exposed port instead.
//   - SERVICE_<KEY>=value from env vars and labels (labels win), lower-cased
//     key; SERVICE_<port>_<KEY> applies to one exposed port and beats
//     SERVICE_<KEY>.
//   - Name: SERVICE_NAME, else the image's basename without registry, tag
//     or digest; "-<port>" is appended when the container has several
//     registered ports, unless the name came from SERVICE_<port>_NAME.
//   - ID: <hostname>:<container name>:<exposed port>, ":udp" appended for
//     UDP ports (which also get the tag "udp"); SERVICE_ID replaces it.
//   - Tags: SERVICE_TAGS then -tags, comma separated ("\," keeps a comma);
//     either may be a Go template over the inspect data (Container), e.g.
//     -tags '{{.Config.Hostname}},{{index .Config.Labels "team"}}'.
//   - Meta: every other SERVICE_* key (upstream's Attrs), check keys
//     included.
//   - Check (consul backend semantics), first present wins:
//     SERVICE_CHECK_HTTP, _HTTPS (path; _HTTP_METHOD, _HTTPS_METHOD,
//     _TIMEOUT), _CMD (check-cmd <id> <port> <cmd>), _SCRIPT ($SERVICE_IP
//     and $SERVICE_PORT substituted), _TTL, _TCP, _GRPC (_GRPC_USE_TLS,
//     _TLS_SKIP_VERIFY), then cairn's _DOCKER (exec in the container,
//     _SHELL); _INTERVAL (default 10s), _INITIAL_STATUS,
//     _DEREGISTER_AFTER apply to all.
//   - SERVICE_IGNORE skips a container (SERVICE_<port>_IGNORE a port);
//     -explicit registers only containers with a SERVICE_NAME;
//     -useIpFromLabel L takes the address from label L (a /prefix is cut);
//     network mode container:<id> takes that container's address.
//   - -deregister on-success keeps the registrations of a container that
//     exited non-zero (not by a signal) until it starts again or is
//     removed, across registrator restarts too. A container waiting to
//     be restarted (restart policy) counts as exited.
//
// # Beyond upstream
//
//   - Containers on several networks: the address is that of the network
//     named by SERVICE_NETWORK, else the user-defined network mode, else
//     the default bridge, else the container's networks sorted by name,
//     skipping Swarm's "ingress"; its IPv4 address, else its global IPv6
//     one.
//   - SERVICE_PORT=8080[/udp] declares a port the image does not expose;
//     not published, it is registered at the container's address.
//   - Per-container overrides: SERVICE_INTERNAL=true|false (-internal),
//     SERVICE_IP=addr (-ip). SERVICE_IGNORE=false does not ignore.
//   - Docker HEALTHCHECK: a container with one gets a second, TTL check
//     (ID registrator:<service ID>) that registrator heartbeats every
//     -ttl-refresh and sets from the health state: healthy is passing,
//     starting and unhealthy are critical.
//   - Graceful drain: a kill event with a stopping signal (TERM, KILL,
//     INT, QUIT; docker stop sends it before the process exits) sets that
//     check critical at once; die then removes the instance. A container
//     still running after its stop timeout and 5s (without one,
//     Config.DrainGrace, 30s) was not stopping (QUIT makes a JVM dump its
//     threads): the check follows its state again.
//   - A paused container (docker pause) stays registered with that check
//     critical until it is unpaused.
//   - Swarm tasks (label com.docker.swarm.service.name) register under the
//     Swarm service's name, at the task's own address and container port
//     (always internal), with the Swarm service's spec labels beneath the
//     container's (readable on managers only).
//   - A container removed after -deregister on-success kept it is
//     deregistered (upstream left it until -cleanup).
package registrator
