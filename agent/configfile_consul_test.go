package agent

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fileKeys is the list of top-level keys cairn reads, as the error for
// an unknown key gives it.
func fileKeys() string {
	var names []string
	for f := range reflect.TypeFor[fileConfig]().Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// A Consul agent config directory, as people have them, loads unchanged:
// the keys cairn uses work, the others are accepted with one warning
// each, and service and check definitions are kept for registration.
func TestLoadConsulConfigFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "10-agent.hcl", `
server = true
bootstrap = true
data_dir = "/opt/consul"
node_meta {
  rack = "r1"
}
addresses {
  http = "0.0.0.0"
  grpc = "127.0.0.1"
}
ports {
  grpc = 8502
}
telemetry {
  prometheus_retention_time = "24h"
}
ui_config {
  enabled = true
}
enable_local_script_checks = true
connect {
  enabled = true
}
service {
  name = "web"
  port = 80
  tags = ["v1"]
  meta {
    team_name = "a"
  }
  check {
    id       = "web-http"
    http     = "http://localhost/health"
    interval = "10s"
  }
}
`)
	writeFile(t, dir, "20-more.json", `{
  "services": [
    {"id": "db-1", "name": "db", "port": 5432, "enable_tag_override": true,
     "checks": [{"tcp": "localhost:5432", "interval": "5s", "deregister_critical_service_after": "1m"}]},
    {"name": "db-proxy", "kind": "connect-proxy", "port": 21000,
     "proxy": {"destination_service_name": "db", "local_service_port": 5432}}
  ],
  "checks": [{"id": "disk", "name": "disk", "ttl": "30s"}],
  "telemetry": {"disable_hostname": true}
}`)
	cfg := DefaultConfig()
	if err := LoadConfigDir(&cfg, dir); err != nil {
		t.Fatal(err)
	}
	if !cfg.Server || cfg.BootstrapExpect != 1 || cfg.ClientAddr != "0.0.0.0" || !cfg.EnableLocalScriptChecks || !cfg.ConnectEnabled {
		t.Errorf("server %v bootstrap_expect %d client %q local scripts %v connect %v; want true 1 0.0.0.0 true true",
			cfg.Server, cfg.BootstrapExpect, cfg.ClientAddr, cfg.EnableLocalScriptChecks, cfg.ConnectEnabled)
	}
	if diff := cmp.Diff(map[string]string{"rack": "r1"}, cfg.NodeMeta); diff != "" {
		t.Errorf("NodeMeta (-want +got):\n%s", diff)
	}
	var ignored []string
	for _, w := range cfg.ConfigWarnings {
		key, _, _ := strings.Cut(strings.TrimPrefix(w, "config key "), " ")
		ignored = append(ignored, key)
		if !strings.Contains(w, "has no effect in cairn") {
			t.Errorf("warning %q does not say the key has no effect", w)
		}
	}
	// One warning per key and file (telemetry is in both files).
	want := []string{"addresses.grpc", "ports.grpc", "telemetry", "ui_config", "telemetry"}
	if diff := cmp.Diff(want, ignored); diff != "" {
		t.Errorf("ignored keys (-want +got):\n%s", diff)
	}

	var names []string
	for _, b := range cfg.Services {
		def, err := parseServiceDefinition(b)
		if err != nil {
			t.Fatalf("service %s: %v", b, err)
		}
		names = append(names, def.Service.Name)
		switch def.Service.Name {
		case "web":
			if len(def.Checks) != 1 || def.Checks[0].ID != "web-http" || def.Checks[0].HTTP != "http://localhost/health" || def.Service.Meta["team_name"] != "a" {
				t.Errorf("web = %+v; want its check web-http and meta team_name (keys of meta kept as written)", def)
			}
		case "db":
			if !def.Service.EnableTagOverride || len(def.Checks) != 1 || def.Checks[0].TCP != "localhost:5432" || def.Checks[0].DeregisterCriticalServiceAfter.String() != "1m0s" {
				t.Errorf("db = %+v; want enable_tag_override and its TCP check", def)
			}
		case "db-proxy":
			var p map[string]any
			if err := json.Unmarshal(def.Service.Proxy, &p); err != nil || p["DestinationServiceName"] != "db" || p["LocalServicePort"] != float64(5432) {
				t.Errorf("db-proxy Proxy = %s (%v); want it in the API's field names", def.Service.Proxy, err)
			}
		}
	}
	if diff := cmp.Diff([]string{"web", "db", "db-proxy"}, names); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if len(cfg.Checks) != 1 {
		t.Fatalf("checks = %d, want 1", len(cfg.Checks))
	}
	if d, err := parseCheckDefinition(cfg.Checks[0]); err != nil || d.ID != "disk" || d.TTL.String() != "30s" {
		t.Errorf("check = %+v, %v; want disk with TTL 30s", d, err)
	}
}

// The definitions of the config files are registered at start, the
// servers' consul service is in the catalog (not among the agent's own
// services), and node_meta is the node's meta beside Consul's keys.
func TestConfigDefinitionsRegisterAtStart(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "consul.hcl", `
node_meta { rack = "r1" }
service {
  name = "web"
  port = 80
  check {
    id  = "web-ttl"
    ttl = "30s"
  }
}
checks = [{ id = "disk", name = "disk", ttl = "1m" }]
`)
	cfg := serverConfig(t.TempDir())
	if err := LoadConfigFile(&cfg, path); err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	svcs, err := r.client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["web"]; !ok || len(svcs) != 1 {
		t.Errorf("agent services = %v; want web only (the consul service is the catalog's, not the agent's)", svcs)
	}
	checks, err := r.client.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web-ttl", "disk"} {
		if _, ok := checks[id]; !ok {
			t.Errorf("agent checks = %v; missing %s", checks, id)
		}
	}
	consul, _, err := r.client.Catalog().Service("consul", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(consul) != 1 || consul[0].ServicePort == 0 || consul[0].NodeMeta["rack"] != "r1" || consul[0].NodeMeta["consul-version"] != ConsulVersion {
		t.Errorf("catalog service consul = %+v; want this server at its RPC port, node meta rack=r1 and consul-version", consul)
	}
}
