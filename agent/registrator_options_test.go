package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/registratortest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestDockerConfigFile: each key of the docker { } block, in HCL and in
// JSON, reaches the registrator's Config as the same registrator option.
func TestDockerConfigFile(t *testing.T) {
	base := func(edit func(*registrator.Config)) registrator.Config {
		rc := registrator.DefaultConfig()
		rc.Hostname, rc.HostIP = "n1", "10.0.0.1"
		if edit != nil {
			edit(&rc)
		}
		return rc
	}
	tests := []struct {
		name       string
		hcl, json  string
		wantDocker bool
		wantHost   string
		want       registrator.Config
	}{
		{"enabled", `docker { enabled = true }`, `{"docker": {"enabled": true}}`, true, "", base(nil)},
		{"host", `docker { host = "tcp://127.0.0.1:2375" }`, `{"docker": {"host": "tcp://127.0.0.1:2375"}}`, false, "tcp://127.0.0.1:2375", base(nil)},
		{"internal", `docker { internal = true }`, `{"docker": {"internal": true}}`, false, "",
			base(func(c *registrator.Config) { c.Internal = true })},
		{"ip", `docker { ip = "192.0.2.7" }`, `{"docker": {"ip": "192.0.2.7"}}`, false, "",
			base(func(c *registrator.Config) { c.HostIP = "192.0.2.7" })},
		{"tags", `docker { tags = "prod,{{.Config.Hostname}}" }`, `{"docker": {"tags": "prod,{{.Config.Hostname}}"}}`, false, "",
			base(func(c *registrator.Config) { c.Tags = "prod,{{.Config.Hostname}}" })},
		{"explicit", `docker { explicit = true }`, `{"docker": {"explicit": true}}`, false, "",
			base(func(c *registrator.Config) { c.Explicit = true })},
		{"use_ip_from_label", `docker { use_ip_from_label = "ip" }`, `{"docker": {"use_ip_from_label": "ip"}}`, false, "",
			base(func(c *registrator.Config) { c.UseIPFromLabel = "ip" })},
		{"resync", `docker { resync = "1m" }`, `{"docker": {"resync": "1m"}}`, false, "",
			base(func(c *registrator.Config) { c.Resync = time.Minute })},
		{"cleanup", `docker { cleanup = true }`, `{"docker": {"cleanup": true}}`, false, "",
			base(func(c *registrator.Config) { c.Cleanup = true })},
		{"deregister", `docker { deregister = "on-success" }`, `{"docker": {"deregister": "on-success"}}`, false, "",
			base(func(c *registrator.Config) { c.Deregister = "on-success" })},
		{"ttl", `docker { ttl = "45s"  ttl_refresh = "15s" }`, `{"docker": {"ttl": "45s", "ttl_refresh": "15s"}}`, false, "",
			base(func(c *registrator.Config) { c.TTL, c.TTLRefresh = 45*time.Second, 15*time.Second })},
	}
	for _, tt := range tests {
		for _, form := range []struct{ ext, text string }{{"hcl", tt.hcl}, {"json", tt.json}} {
			t.Run(tt.name+"/"+form.ext, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "c."+form.ext)
				if err := os.WriteFile(path, []byte(form.text), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg := devConfig()
				if err := LoadConfigFile(&cfg, path); err != nil {
					t.Fatalf("LoadConfigFile(%s): %v", form.text, err)
				}
				if err := cfg.Validate(); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if cfg.Docker != tt.wantDocker || cfg.DockerHost != tt.wantHost {
					t.Errorf("Docker=%v DockerHost=%q, want %v %q", cfg.Docker, cfg.DockerHost, tt.wantDocker, tt.wantHost)
				}
				got := cfg.DockerOptions.registratorConfig("n1", "10.0.0.1")
				if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(registrator.Config{}, "Logger")); diff != "" {
					t.Errorf("registrator config (-want +got):\n%s", diff)
				}
				// And the registrator takes it as it is.
				if _, err := registrator.New(got, registratortest.NewEngine(), catalogRegistry{}); err != nil {
					t.Errorf("registrator.New refuses it: %v", err)
				}
			})
		}
	}
}

// TestDockerOptionsErrors: an option the registrator could not run with
// is refused at start, naming the agent's flag and what to give instead.
func TestDockerOptionsErrors(t *testing.T) {
	tests := []struct {
		name    string
		o       DockerOptions
		file    string // or a config file (HCL)
		wantErr string
	}{
		{name: "deregister", o: DockerOptions{Deregister: "never"}, wantErr: `-docker-deregister="never": use always or on-success`},
		{name: "ip", o: DockerOptions{IP: "host1"}, wantErr: `-docker-ip="host1" is not an IP address`},
		{name: "tags", o: DockerOptions{Tags: "{{.Config"}, wantErr: `-docker-tags="{{.Config" is not a valid Go template`},
		{name: "resync", o: DockerOptions{Resync: -time.Second}, wantErr: "-docker-resync=-1s is negative"},
		{name: "ttl-refresh", o: DockerOptions{TTL: 10 * time.Second, TTLRefresh: 10 * time.Second}, wantErr: "-docker-ttl-refresh=10s must be shorter than -docker-ttl=10s"},
		{name: "ttl-refresh over the default ttl", o: DockerOptions{TTLRefresh: time.Minute}, wantErr: "-docker-ttl-refresh=1m0s must be shorter than -docker-ttl=30s"},
		{name: "file duration", file: `docker { resync = "10" }`, wantErr: `docker.resync = "10" is not a duration`},
		{name: "file key", file: `docker { intenral = true }`, wantErr: `unknown key "docker.intenral"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := devConfig()
			cfg.DockerOptions = tt.o
			var err error
			if tt.file != "" {
				path := filepath.Join(t.TempDir(), "c.hcl")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				err = LoadConfigFile(&cfg, path)
			} else {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
