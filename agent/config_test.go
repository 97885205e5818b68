package agent

import (
	"time"

	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// server is a valid single-server configuration to vary.
func server() Config {
	c := DefaultConfig()
	c.Server = true
	c.BootstrapExpect = 1
	c.DataDir = "/var/lib/cairn"
	return c
}

func dev() Config {
	c := DefaultConfig()
	c.Dev = true
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		edit    func(*Config)
		wantErr string // "" means valid
	}{
		{name: "server", cfg: server()},
		{name: "dev", cfg: dev()},
		{name: "dev with server flag", cfg: dev(), edit: func(c *Config) { c.Server = true }},
		{name: "all ports free-picked", cfg: server(), edit: func(c *Config) { c.Ports = Ports{} }},
		{name: "http and dns off", cfg: server(), edit: func(c *Config) { c.Ports.HTTP, c.Ports.DNS = -1, -1 }},
		{name: "full config", cfg: server(), edit: func(c *Config) {
			c.NodeName = "web-1.example"
			c.NodeID = "4F1A8A6E-2B1C-4C59-9B38-6C2F1D0E9A11"
			c.BindAddr = "10.0.0.5"
			c.AdvertiseAddr = "192.0.2.1"
			c.ClientAddr = "::1"
			c.Encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
			c.Domain = "consul"
			c.Recursors = []string{"1.1.1.1", "10.0.0.2:53", "[2001:db8::1]:5353"}
			c.LogLevel = "TRACE"
			c.Join = []string{"10.0.0.6"}
		}},

		{name: "bootstrap-expect with dev", cfg: dev(), edit: func(c *Config) { c.BootstrapExpect = 3 },
			wantErr: "-bootstrap-expect=3 conflicts with -dev (a single server); drop one of them"},
		{name: "data-dir with dev", cfg: dev(), edit: func(c *Config) { c.DataDir = "/tmp/d" },
			wantErr: "-data-dir=/tmp/d conflicts with -dev, which uses a temporary data dir removed on exit; drop one of them"},
		{name: "no data dir", cfg: server(), edit: func(c *Config) { c.DataDir = "" },
			wantErr: "-data-dir is required unless -dev is set; give a directory for the node ID and the Raft state (it is created if missing)"},
		{name: "bootstrap-expect without server", cfg: server(), edit: func(c *Config) { c.Server = false },
			wantErr: "-bootstrap-expect=1 needs -server: only servers take part in the Raft group; add -server or drop -bootstrap-expect"},
		{name: "client agent", cfg: server(), edit: func(c *Config) { c.Server, c.BootstrapExpect = false, 0 }},
		{name: "bootstrap-expect 3", cfg: server(), edit: func(c *Config) { c.BootstrapExpect = 3 }},
		{name: "server without bootstrap-expect joins a group", cfg: server(), edit: func(c *Config) { c.BootstrapExpect = 0 }},
		{name: "underscore datacenter with DNS", cfg: server(), edit: func(c *Config) { c.Datacenter, c.Ports.DNS = "eu_west", 8600 },
			wantErr: `-datacenter="eu_west" is not a DNS label (letters, digits and inner hyphens, at most 63), and DNS answers <node>.node.<datacenter>.<domain>; use '-' instead of '_', or turn DNS off with -dns-port=-1`},
		{name: "underscore datacenter without DNS", cfg: server(), edit: func(c *Config) { c.Datacenter, c.Ports.DNS = "eu_west", -1 }},
		{name: "negative reconnect timeout", cfg: server(), edit: func(c *Config) { c.ReconnectTimeout = -time.Second },
			wantErr: "reconnect_timeout -1s is negative; drop it for the default 72h"},
		{name: "negative bootstrap-expect", cfg: server(), edit: func(c *Config) { c.BootstrapExpect = -2 },
			wantErr: "-bootstrap-expect=-2 is negative; use the number of servers (1, 3 or 5)"},
		{name: "http port too high", cfg: server(), edit: func(c *Config) { c.Ports.HTTP = 70000 },
			wantErr: "-http-port=70000 is out of range; use 1-65535 (0 picks a free port, -1 turns it off)"},
		{name: "server port negative", cfg: server(), edit: func(c *Config) { c.Ports.Server = -1 },
			wantErr: "-server-port=-1 is out of range; use 1-65535 (0 picks a free port)"},
		{name: "dns port -2", cfg: server(), edit: func(c *Config) { c.Ports.DNS = -2 },
			wantErr: "-dns-port=-2 is out of range; use 1-65535 (0 picks a free port, -1 turns it off)"},
		{name: "same port twice", cfg: server(), edit: func(c *Config) { c.Ports.Server = 8500 },
			wantErr: "-server-port=8500 is also -http-port; give each port its own number"},
		{name: "bind with port", cfg: server(), edit: func(c *Config) { c.BindAddr = "10.0.0.5:8300" },
			wantErr: `-bind="10.0.0.5:8300" is not an IP address; give one IP, such as 10.0.0.5 (no port: ports have their own flags)`},
		{name: "advertise host name", cfg: server(), edit: func(c *Config) { c.AdvertiseAddr = "node1" },
			wantErr: `-advertise="node1" is not an IP address; give one IP, such as 10.0.0.5 (no port: ports have their own flags)`},
		{name: "client empty", cfg: server(), edit: func(c *Config) { c.ClientAddr = "" },
			wantErr: "-client is empty; give the IP for the HTTP API and DNS, such as 127.0.0.1 or 0.0.0.0"},
		{name: "client bad", cfg: server(), edit: func(c *Config) { c.ClientAddr = "localhost" },
			wantErr: `-client="localhost" is not an IP address; give one IP, such as 127.0.0.1 or 0.0.0.0`},
		{name: "node id not uuid", cfg: server(), edit: func(c *Config) { c.NodeID = "node-1" },
			wantErr: `-node-id="node-1" is not a UUID (like 4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11); drop it to use the one kept in the data dir`},
		{name: "node name with space", cfg: server(), edit: func(c *Config) { c.NodeName = "web 1" },
			wantErr: `-node="web 1" contains spaces or slashes; use a name of letters, digits, '-', '_' and '.'`},
		{name: "datacenter empty", cfg: server(), edit: func(c *Config) { c.Datacenter = "" },
			wantErr: "-datacenter is empty; drop it to use dc1"},
		{name: "datacenter bad", cfg: server(), edit: func(c *Config) { c.Datacenter = "eu.west" },
			wantErr: `-datacenter="eu.west" may only contain letters, digits, '_' and '-'`},
		{name: "encrypt not base64", cfg: server(), edit: func(c *Config) { c.Encrypt = "not base64!" },
			wantErr: "-encrypt is not valid base64 (illegal base64 data at input byte 3); generate a key with: openssl rand -base64 32"},
		{name: "encrypt wrong length", cfg: server(), edit: func(c *Config) { c.Encrypt = "c2hvcnQ=" },
			wantErr: "-encrypt decodes to 5 bytes; a gossip key is 16, 24 or 32 bytes; generate one with: openssl rand -base64 32"},
		{name: "domain empty", cfg: server(), edit: func(c *Config) { c.Domain = "." },
			wantErr: `-domain="." is the root; cairn needs a domain of its own such as cluster.`},
		{name: "recursor host name", cfg: server(), edit: func(c *Config) { c.Recursors = []string{"dns.google"} },
			wantErr: `-recursor="dns.google" is not an IP or IP:port (e.g. 1.1.1.1 or [2606:4700::1111]:53); host names are not resolved`},
		{name: "recursor bad port", cfg: server(), edit: func(c *Config) { c.Recursors = []string{"1.1.1.1:0"} },
			wantErr: `-recursor="1.1.1.1:0" has port 0; use IP or IP:port, such as 1.1.1.1 or 10.0.0.2:53`},
		{name: "domain with an underscore (once refused only after Raft opened)", cfg: server(), edit: func(c *Config) { c.Domain = "my_domain" },
			wantErr: `-domain="my_domain" is not a DNS domain: "my_domain" is not a DNS label (letters, digits and inner hyphens, at most 63); use a name like cluster or consul`},
		{name: "domain with an underscore, DNS off", cfg: server(), edit: func(c *Config) { c.Domain, c.Ports.DNS = "my_domain", -1 }},
		{name: "alt domain off", cfg: server(), edit: func(c *Config) { c.AltDomain = "" }},
		{name: "alt domain same as domain", cfg: server(), edit: func(c *Config) { c.Domain = "consul" }},
		{name: "alt domain inside domain", cfg: server(), edit: func(c *Config) { c.AltDomain = "consul.cluster" },
			wantErr: `-alt-domain="consul.cluster" overlaps domain "cluster."; names would be ambiguous, pick a domain that is not inside the other`},
		{name: "alt domain bad", cfg: server(), edit: func(c *Config) { c.AltDomain = "a..b" },
			wantErr: `-alt-domain="a..b" is not a DNS domain: "" is not a DNS label (letters, digits and inner hyphens, at most 63); use a name like cluster or consul`},
		{name: "service ttl fraction", cfg: server(), edit: func(c *Config) { c.DNS.ServiceTTL = 1500 * time.Millisecond },
			wantErr: `dns_config.service_ttl="1.5s" must be whole seconds between 0s and 2147483647s`},
		{name: "templates", cfg: server(), edit: func(c *Config) {
			c.Templates = []string{"in.tmpl:out.conf:nginx -s reload"}
			c.TemplateCheck = "nginx -t"
			c.TemplateWait = "1s:5s"
		}},
		{name: "template empty", cfg: server(), edit: func(c *Config) { c.Templates = []string{""} },
			wantErr: `-template "": give source[:destination[:command]], e.g. -template "web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload"`},
		{name: "template check alone", cfg: server(), edit: func(c *Config) { c.TemplateCheck = "nginx -t" },
			wantErr: "-template-check applies to -template templates and there are none; add a -template, or set check in the template {} block of the -template-config file"},
		{name: "template wait", cfg: server(), edit: func(c *Config) { c.Templates, c.TemplateWait = []string{"a:b"}, "5s:1s" },
			wantErr: "-template-wait: wait \"5s:1s\": max 1s is less than min 5s; give max >= min"},
		{name: "log level", cfg: server(), edit: func(c *Config) { c.LogLevel = "verbose" },
			wantErr: `-log-level="verbose" is not a log level; use trace, debug, info, warn or err`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %q, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			case tt.wantErr != "" && err.Error() != tt.wantErr:
				t.Fatalf("Validate() =\n  %q\nwant\n  %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewFillsHostDefaults(t *testing.T) {
	a, err := New(dev(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := a.Config()
	host, _ := os.Hostname()
	if got.NodeName != host {
		t.Errorf("NodeName = %q, want the host name %q", got.NodeName, host)
	}
	if !got.Server || got.BindAddr != "127.0.0.1" || got.Domain != "cluster." {
		t.Errorf("-dev config: Server=%v BindAddr=%q Domain=%q, want true, 127.0.0.1, cluster.", got.Server, got.BindAddr, got.Domain)
	}

	c := server()
	c.Domain = "consul"
	a, err = New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Config(); got.BindAddr != "0.0.0.0" || got.Domain != "consul." {
		t.Errorf("server config: BindAddr=%q Domain=%q, want 0.0.0.0, consul.", got.BindAddr, got.Domain)
	}

	if _, err := New(Config{}, nil); err == nil {
		t.Error("New(Config{}) = nil error, want a validation error")
	}
}

func TestParseLogLevel(t *testing.T) {
	for _, in := range []string{"trace", "DEBUG", "info", "", "warn", "warning", "err", "error"} {
		if _, err := ParseLogLevel(in); err != nil {
			t.Errorf("ParseLogLevel(%q) = %v, want nil", in, err)
		}
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFile(t *testing.T) {
	const hclBody = `
node_name        = "web-1"
node_id          = "4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11"
datacenter       = "eu1"
data_dir         = "/var/lib/cairn"
server           = true
bootstrap_expect = 1
bind_addr        = "10.0.0.5"
advertise_addr   = "192.0.2.1"
client_addr      = "0.0.0.0"
ports {
  http     = 18500
  dns      = 18600
  serf_lan = 18301
  server   = 18300
}
start_join = ["10.0.0.7"]
retry_join = ["10.0.0.6", "10.0.0.8"]
encrypt    = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
domain     = "consul"
alt_domain = "example"
recursors  = ["1.1.1.1"]
log_level  = "debug"
enable_debug = true
dns_config {
  service_ttl  = "10s"
  node_ttl     = "1m"
  only_passing = false
}
`
	const jsonBody = `{
  "node_name": "web-1",
  "node_id": "4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11",
  "datacenter": "eu1",
  "data_dir": "/var/lib/cairn",
  "server": true,
  "bootstrap_expect": 1,
  "bind_addr": "10.0.0.5",
  "advertise_addr": "192.0.2.1",
  "client_addr": "0.0.0.0",
  "ports": {"http": 18500, "dns": 18600, "serf_lan": 18301, "server": 18300},
  "start_join": ["10.0.0.7"],
  "retry_join": ["10.0.0.6", "10.0.0.8"],
  "encrypt": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
  "domain": "consul",
  "alt_domain": "example",
  "recursors": ["1.1.1.1"],
  "log_level": "debug",
  "enable_debug": true,
  "dns_config": {"service_ttl": "10s", "node_ttl": "1m", "only_passing": false}
}`
	want := DefaultConfig()
	want.NodeName = "web-1"
	want.NodeID = "4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11"
	want.Datacenter = "eu1"
	want.DataDir = "/var/lib/cairn"
	want.Server = true
	want.BootstrapExpect = 1
	want.BindAddr = "10.0.0.5"
	want.AdvertiseAddr = "192.0.2.1"
	want.ClientAddr = "0.0.0.0"
	want.Ports = Ports{HTTP: 18500, HTTPS: -1, DNS: 18600, SerfLAN: 18301, Server: 18300}
	want.Join = []string{"10.0.0.7"}
	want.RetryJoin = []string{"10.0.0.6", "10.0.0.8"}
	want.Encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	want.Domain = "consul"
	want.AltDomain = "example"
	want.Recursors = []string{"1.1.1.1"}
	want.LogLevel = "debug"
	want.EnableDebug = true
	want.DNS = DNSConfig{ServiceTTL: 10 * time.Second, NodeTTL: time.Minute, OnlyPassing: false}

	for _, tt := range []struct{ name, file, body string }{
		{"hcl", "agent.hcl", hclBody},
		{"json", "agent.json", jsonBody},
		{"json without extension", "agent.conf", jsonBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tt.file, tt.body)
			got := DefaultConfig()
			if err := LoadConfigFile(&got, path); err != nil {
				t.Fatalf("LoadConfigFile: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadConfigFile(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestLoadConfigFileKeepsWhatItDoesNotName(t *testing.T) {
	path := writeFile(t, t.TempDir(), "a.hcl", `ports { http = 9500 }`+"\n"+`retry_join = ["b"]`)
	got := server()
	got.RetryJoin = []string{"a"}
	if err := LoadConfigFile(&got, path); err != nil {
		t.Fatal(err)
	}
	want := server()
	want.Ports.HTTP = 9500
	want.RetryJoin = []string{"a", "b"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfigFile mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	const keys = "KEYS"
	tests := []struct {
		name, file, body string
		wantErr          string // with %s for the file's path
	}{
		{"unknown hcl key", "a.hcl", "server = true\nservr = true\n",
			`config file %s: line 2: unknown key "servr"; it is neither one of cairn's keys (` + keys + `) nor one of Consul's`},
		{"unknown json key", "a.json", "{\"server\": true,\n \"enable_locl_script_checks\": true}",
			`config file %s: unknown key "enable_locl_script_checks"; it is neither one of cairn's keys (` + keys + `) nor one of Consul's`},
		{"unknown port", "a.hcl", "ports {\n  htps = 8501\n}\n",
			`config file %s: line 2: unknown key "ports.htps"; it is neither one of cairn's keys in ports (dns, http, https, serf_lan, server) nor one of Consul's`},
		{"unknown json port", "a.json", `{"ports": {"grcp": 8502}}`,
			`config file %s: unknown key "ports.grcp"; it is neither one of cairn's keys in ports (dns, http, https, serf_lan, server) nor one of Consul's`},
		{"bad service", "a.hcl", "service {\n  name = \"web\"\n  prot = 80\n}\n",
			`config file %s: line 1: service: json: unknown field "Prot"`},
		{"bad check", "a.json", `{"checks": [{"id": "a", "ttl": "soon"}]}`,
			`config file %s: checks[0]: check "a": TTL="soon": invalid duration; give one with a unit, such as "10s" or "1m30s"`},
		{"wrong type", "a.hcl", `bootstrap_expect = "three"`,
			`config file %s: line 1: bootstrap_expect: strconv.ParseInt: parsing "three": invalid syntax`},
		{"wrong json type", "a.json", `{"server": "yes please"}`,
			`config file %s: server: At -: root.server: unknown type *ast.LiteralType`},
		{"unknown dns_config key", "a.hcl", "dns_config {\n  enable_trunc = true\n}\n",
			`config file %s: line 2: unknown key "dns_config.enable_trunc"; it is neither one of cairn's keys in dns_config (node_ttl, only_passing, service_ttl) nor one of Consul's`},
		{"bad ttl", "a.hcl", "dns_config {\n  service_ttl = \"ten\"\n}\n",
			`config file %s: dns_config.service_ttl = "ten" is not a duration; give whole seconds with a unit, such as "10s"`},
		{"syntax", "a.hcl", "ports {\n  http = 1\n",
			`parse config file %s: At 3:2: object expected closing RBRACE got: EOF`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, tt.file, tt.body)
			cfg := DefaultConfig()
			err := LoadConfigFile(&cfg, path)
			want := strings.ReplaceAll(tt.wantErr, "%s", path)
			want = strings.ReplaceAll(want, "KEYS", fileKeys())
			if err == nil || err.Error() != want {
				t.Fatalf("LoadConfigFile(%q) =\n  %v\nwant\n  %s", tt.body, err, want)
			}
		})
	}

	cfg := DefaultConfig()
	err := LoadConfigFile(&cfg, filepath.Join(dir, "missing.hcl"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.hcl") {
		t.Errorf("LoadConfigFile(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestLoadConfigDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "10-base.hcl", `node_name = "base"`+"\n"+`datacenter = "eu1"`)
	writeFile(t, dir, "20-override.json", `{"node_name": "override"}`)
	writeFile(t, dir, "README.md", `ignored = "not a config file"`)
	writeFile(t, dir, "30-backup.hcl~", `bad key`)
	cfg := DefaultConfig()
	if err := LoadConfigDir(&cfg, dir); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "override" || cfg.Datacenter != "eu1" {
		t.Errorf("LoadConfigDir: NodeName=%q Datacenter=%q, want override (later file wins), eu1", cfg.NodeName, cfg.Datacenter)
	}
}

func TestNodeIDKeptInDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := loadNodeID(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !isUUID(first) {
		t.Fatalf("generated node ID %q is not a UUID", first)
	}
	again, err := loadNodeID(dir, "")
	if err != nil || again != first {
		t.Fatalf("loadNodeID again = %q, %v; want the kept %q", again, err, first)
	}
	same, err := loadNodeID(dir, strings.ToUpper(first))
	if err != nil || same != first {
		t.Fatalf("loadNodeID(kept ID in upper case) = %q, %v; want %q", same, err, first)
	}

	const other = "4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11"
	_, err = loadNodeID(dir, other)
	wantErr := "-node-id=" + other + " differs from " + first + " kept in " + filepath.Join(dir, "node-id") +
		", and the data dir's Raft state belongs to the kept ID; drop -node-id or use a new -data-dir"
	if err == nil || err.Error() != wantErr {
		t.Fatalf("loadNodeID(other) = %v, want %q", err, wantErr)
	}

	fresh := t.TempDir()
	if got, err := loadNodeID(fresh, other); err != nil || got != other {
		t.Fatalf("loadNodeID(fresh, configured) = %q, %v; want %q", got, err, other)
	}
	if got, _ := loadNodeID(fresh, ""); got != other {
		t.Fatalf("configured node ID was not kept: got %q, want %q", got, other)
	}

	bad := t.TempDir()
	writeFile(t, bad, "node-id", "garbage\n")
	_, err = loadNodeID(bad, "")
	wantErr = `node ID file ` + filepath.Join(bad, "node-id") + ` holds "garbage", which is not a UUID; restore it from a backup, or remove it to get a new ID (and with it a new identity in the cluster)`
	if err == nil || err.Error() != wantErr {
		t.Fatalf("loadNodeID(garbage) = %v, want %q", err, wantErr)
	}
}

func TestPrepareDataDir(t *testing.T) {
	file := writeFile(t, t.TempDir(), "not-a-dir", "x")
	_, err := prepareDataDir(file)
	want := "-data-dir=" + file + " is a file, not a directory; point -data-dir at a directory (it is created if missing)"
	if err == nil || err.Error() != want {
		t.Fatalf("prepareDataDir(file) = %v, want %q", err, want)
	}

	dir := filepath.Join(t.TempDir(), "a", "b")
	release, err := prepareDataDir(dir)
	if err != nil {
		t.Fatalf("prepareDataDir(missing dir) = %v, want it created", err)
	}
	if _, err := prepareDataDir(dir); err == nil || !strings.Contains(err.Error(), "is in use by another cairn agent") {
		t.Errorf("prepareDataDir(locked dir) = %v, want an in-use error", err)
	}
	release()
	release, err = prepareDataDir(dir)
	if err != nil {
		t.Fatalf("prepareDataDir after release = %v", err)
	}
	release()
}

func TestPickAdvertise(t *testing.T) {
	host := func(route string, list ...string) hostNet {
		return hostNet{
			defaultRoute: func() (netip.Addr, bool) {
				if route == "" {
					return netip.Addr{}, false
				}
				return netip.MustParseAddr(route), true
			},
			addrs: func() ([]netip.Addr, error) {
				var out []netip.Addr
				for _, s := range list {
					out = append(out, netip.MustParseAddr(s))
				}
				return out, nil
			},
		}
	}
	tests := []struct {
		name, bind, advertise string
		host                  hostNet
		want, wantErr         string
	}{
		{name: "explicit advertise", bind: "0.0.0.0", advertise: "192.0.2.1", host: host("10.0.0.1"), want: "192.0.2.1"},
		{name: "specific bind", bind: "127.0.0.1", host: host("10.0.0.1"), want: "127.0.0.1"},
		// A host running Docker: the bridge's address is private too, the
		// default route says which one the user means.
		{name: "default route beside docker0", bind: "0.0.0.0", host: host("192.168.1.20", "192.168.1.20", "172.17.0.1"), want: "192.168.1.20"},
		{name: "default route public", bind: "0.0.0.0", host: host("203.0.113.9", "203.0.113.9", "172.17.0.1"), want: "203.0.113.9"},
		{name: "no route, one private", bind: "0.0.0.0", host: host("", "203.0.113.9", "10.1.2.3", "fe80::1"), want: "10.1.2.3"},
		{name: "no route, cgnat counts", bind: "0.0.0.0", host: host("", "100.64.1.1"), want: "100.64.1.1"},
		{name: "no network at all", bind: "0.0.0.0", host: host("", "fe80::1"), want: "127.0.0.1"},
		{name: "no route, none private", bind: "0.0.0.0", host: host("", "203.0.113.9"),
			wantErr: "-bind=0.0.0.0 listens on every address, and this host has no default route and no private IPv4 address to advertise; set -advertise (or -bind) to the IP other nodes reach this one on (127.0.0.1 for agents on this machine only)"},
		{name: "no route, several", bind: "0.0.0.0", host: host("", "10.0.0.1", "192.168.1.2"),
			wantErr: "-bind=0.0.0.0 listens on every address, and this host has no default route and several private IPv4 addresses (10.0.0.1, 192.168.1.2); set -advertise (or -bind) to the one other nodes reach this one on (127.0.0.1 for agents on this machine only)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickAdvertise(tt.bind, tt.advertise, tt.host)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("pickAdvertise(%s, %q) = %q, %v; want error %q", tt.bind, tt.advertise, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("pickAdvertise(%s, %q) = %q, %v; want %q", tt.bind, tt.advertise, got, err, tt.want)
			}
		})
	}
}
