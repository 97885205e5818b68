package main

import (
	"flag"

	"github.com/cairn-dev/cairn/agent"
)

// dockerFlags declares -docker-host and registrator's options for the
// in-process registrator (-docker), each as -docker-<registrator flag>.
func dockerFlags(fs *flag.FlagSet, c *agent.Config) {
	o := &c.DockerOptions
	fs.StringVar(&c.DockerHost, "docker-host", c.DockerHost, "Docker engine of -docker ($DOCKER_HOST, else unix:///var/run/docker.sock).")
	fs.BoolVar(&o.Internal, "docker-internal", o.Internal, "-docker: register the container's own address and exposed port, not the published one (registrator -internal).")
	fs.StringVar(&o.IP, "docker-ip", o.IP, "-docker: IP registered for published ports; the advertise address by default (registrator -ip).")
	fs.StringVar(&o.Tags, "docker-tags", o.Tags, "-docker: tags added to every service, a comma list or a Go template over the container's inspect data (registrator -tags).")
	fs.BoolVar(&o.Explicit, "docker-explicit", o.Explicit, "-docker: register only containers with SERVICE_NAME or SERVICE_<port>_NAME (registrator -explicit).")
	fs.StringVar(&o.UseIPFromLabel, "docker-use-ip-from-label", o.UseIPFromLabel, "-docker: container label whose value is the address to register (registrator -useIpFromLabel).")
	fs.DurationVar(&o.Resync, "docker-resync", o.Resync, "-docker: period of a full resync with the engine; 0: only at start and after the engine restarts (registrator -resync, here a duration).")
	fs.BoolVar(&o.Cleanup, "docker-cleanup", o.Cleanup, "-docker: on every resync, remove this node's registrations whose containers are gone (registrator -cleanup).")
	fs.StringVar(&o.Deregister, "docker-deregister", o.Deregister, `-docker: deregister exited containers "always" (default) or "on-success", keeping failed ones until removed (registrator -deregister).`)
	fs.DurationVar(&o.TTL, "docker-ttl", o.TTL, "-docker: TTL of the container-state check (HEALTHCHECK, drain); 30s by default (registrator -ttl, here a duration).")
	fs.DurationVar(&o.TTLRefresh, "docker-ttl-refresh", o.TTLRefresh, "-docker: how often that check is renewed; -docker-ttl/3 by default (registrator -ttl-refresh, here a duration).")
}
