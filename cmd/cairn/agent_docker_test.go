package main

import (
	"io"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent"
	"github.com/google/go-cmp/cmp"
)

// TestAgentDockerFlags: each -docker-* flag sets its registrator option,
// and a flag wins over the config file's docker { } block.
func TestAgentDockerFlags(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "docker.hcl", `docker {
  enabled    = true
  internal   = true
  tags       = "from-file"
  deregister = "on-success"
}`)
	tests := []struct {
		args []string
		want func(c *agent.Config)
	}{
		{[]string{"-docker"}, func(c *agent.Config) { c.Docker = true }},
		{[]string{"-docker-host", "tcp://127.0.0.1:2375"}, func(c *agent.Config) { c.DockerHost = "tcp://127.0.0.1:2375" }},
		{[]string{"-docker-internal"}, func(c *agent.Config) { c.DockerOptions.Internal = true }},
		{[]string{"-docker-ip", "192.0.2.7"}, func(c *agent.Config) { c.DockerOptions.IP = "192.0.2.7" }},
		{[]string{"-docker-tags", "a,b"}, func(c *agent.Config) { c.DockerOptions.Tags = "a,b" }},
		{[]string{"-docker-explicit"}, func(c *agent.Config) { c.DockerOptions.Explicit = true }},
		{[]string{"-docker-use-ip-from-label", "ip"}, func(c *agent.Config) { c.DockerOptions.UseIPFromLabel = "ip" }},
		{[]string{"-docker-resync", "30s"}, func(c *agent.Config) { c.DockerOptions.Resync = 30 * time.Second }},
		{[]string{"-docker-cleanup"}, func(c *agent.Config) { c.DockerOptions.Cleanup = true }},
		{[]string{"-docker-deregister", "on-success"}, func(c *agent.Config) { c.DockerOptions.Deregister = "on-success" }},
		{[]string{"-docker-ttl", "1m", "-docker-ttl-refresh", "20s"}, func(c *agent.Config) {
			c.DockerOptions.TTL, c.DockerOptions.TTLRefresh = time.Minute, 20*time.Second
		}},
		{[]string{"-config-file", file, "-docker-internal=false", "-docker-tags", "from-flag"}, func(c *agent.Config) {
			c.Docker = true
			c.DockerOptions.Tags = "from-flag"
			c.DockerOptions.Deregister = "on-success"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.args[0]+"="+tt.args[len(tt.args)-1], func(t *testing.T) {
			want := agent.DefaultConfig()
			tt.want(&want)
			got, err := loadAgentConfig(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("loadAgentConfig(%q) = %v", tt.args, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("loadAgentConfig(%q) (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}
