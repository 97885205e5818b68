package membership

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"no node name", func(c *Config) { c.NodeName = "" },
			"membership: node name is empty; set -node"},
		{"bind not an IP", func(c *Config) { c.BindAddr = "eth0" },
			`membership: -bind="eth0" is not an IP address; use one of this host's addresses, or 0.0.0.0 for all`},
		{"port out of range", func(c *Config) { c.BindPort = 70000 },
			"membership: -serf-lan-port=70000 is not a port (0-65535); the default is 8301"},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" },
			`membership: -advertise="0.0.0.0" is not an IP address other agents can reach; give this host's address on the cluster network`},
		{"short key", func(c *Config) { c.EncryptKey = []byte("short") },
			`membership: -encrypt: it decodes to 5 bytes, but a gossip key must be 16, 24 or 32 bytes; make one with "cairn keygen"`},
		{"negative reap", func(c *Config) { c.ReapFailedAfter = -time.Second },
			"membership: ReapFailedAfter=-1s is negative; use 0 for the default (72h)"},
		{"unknown role", func(c *Config) { c.Meta.Role = "leader" },
			`membership: role "leader" is neither "server" nor "client"`},
		{"server without raft address", func(c *Config) { c.Meta.Role = RoleServer },
			"membership: a server must advertise its Raft address: server address is empty; want host:port (the -server-port, 8300 by default)"},
		{"server with unspecified raft address", func(c *Config) { c.Meta.Role, c.Meta.RaftAddr = RoleServer, "0.0.0.0:8300" },
			`membership: a server must advertise its Raft address: server address "0.0.0.0:8300" is not an IP:port other agents can reach, like 10.0.0.5:8300`},
		{"client with raft address", func(c *Config) { c.Meta.RaftAddr = "10.0.0.1:8300" },
			`membership: Raft address "10.0.0.1:8300" is set on a client; only servers (-server) have one`},
		{"node id not a UUID", func(c *Config) { c.Meta.NodeID = "node-1" },
			`membership: -node-id="node-1" is not a UUID (like 6a2f5c9e-0b1d-4e8f-9c3a-2d7b1e0f4a56)`},
		{"protocol from the future", func(c *Config) { c.Meta.Proto = 2 },
			"membership: protocol version 2 is not supported; this build speaks 1"},
		{"bad http port", func(c *Config) { c.Meta.HTTPPort = -1 },
			"membership: -http-port=-1 is not a port (0-65535)"},
		{"meta too big", func(c *Config) { c.Meta.Datacenter = strings.Repeat("d", 450) },
			"membership: node meta is 516 bytes encoded, more than memberlist's limit of 512; shorten -datacenter, -node-id or the server address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeName, cfg.BindAddr, cfg.BindPort = "a", "127.0.0.1", 0
			tc.change(&cfg)
			m, err := New(cfg)
			if err == nil {
				m.Shutdown()
				t.Fatalf("New(%s) = nil error, want %q", tc.name, tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("New(%s) error\n got %q\nwant %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestNewBindErrorNamesThePort(t *testing.T) {
	a := newMember(t, "a")
	port := a.LocalMember().Port
	_, err := New(Config{NodeName: "b", BindAddr: "127.0.0.1", BindPort: port, Fast: true})
	want := fmt.Sprintf("membership: bind gossip port 127.0.0.1:%d (TCP and UDP): it is in use (another agent running?); stop it or pick another port with -serf-lan-port (memberlist: ", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("New on a used port = %v\nwant prefix %q", err, want)
	}
}

func TestZeroConfigFieldsMeanDefaults(t *testing.T) {
	got, err := Config{NodeName: "a"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	got.Logger = nil
	want := Config{NodeName: "a", BindAddr: "0.0.0.0", ReapFailedAfter: 72 * time.Hour,
		Meta: Meta{Role: RoleClient, Datacenter: "dc1", Proto: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("validate(zero) mismatch (-want +got):\n%s", diff)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	meta := Meta{Role: RoleServer, Datacenter: "dc1", RaftAddr: "10.0.0.5:8300",
		NodeID: "6a2f5c9e-0b1d-4e8f-9c3a-2d7b1e0f4a56", Proto: 1, HTTPPort: 8500, DNSPort: 8600}
	for _, leaving := range []bool{false, true} {
		b, err := encodeMeta(meta, leaving)
		if err != nil {
			t.Fatal(err)
		}
		got, gotLeaving, err := decodeMeta(b)
		if err != nil || got != meta || gotLeaving != leaving {
			t.Errorf("decodeMeta(encodeMeta(%+v, %v)) = %+v, %v, %v", meta, leaving, got, gotLeaving, err)
		}
		t.Logf("encoded meta, leaving=%v: %d bytes: %s", leaving, len(b), b)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty", "", "no node meta (not a cairn agent?)"},
		{"not json", "\x00\x01", "node meta is not cairn's (2 bytes): invalid character '\\x00' looking for beginning of value"},
		{"wrong type", `{"r":5}`, "node meta is not cairn's (7 bytes): json: cannot unmarshal number into Go struct field wireMeta.r of type membership.Role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := decodeMeta([]byte(tc.in))
			if err == nil || err.Error() != tc.wantErr || got != (Meta{}) {
				t.Errorf("decodeMeta(%q) = %+v, %v; want empty meta, error %q", tc.in, got, err, tc.wantErr)
			}
		})
	}
}

func TestSplitJoinAddr(t *testing.T) {
	for _, tc := range []struct {
		in       string
		wantHost string
		wantPort uint16
		wantErr  string
	}{
		{"10.0.0.1", "10.0.0.1", 8301, ""},
		{"10.0.0.1:9000", "10.0.0.1", 9000, ""},
		{"db1", "db1", 8301, ""},
		{"db1:9000", "db1", 9000, ""},
		{"::1", "::1", 8301, ""},
		{"[::1]", "::1", 8301, ""},
		{"[::1]:9000", "::1", 9000, ""},
		{"db1:http", "", 0, `port "http" is not a port (1-65535)`},
		{"db1:0", "", 0, `port "0" is not a port (1-65535)`},
		{":9000", "", 0, "no host before the port"},
		{"a:b:c", "", 0, "not a host or host:port (address a:b:c: too many colons in address)"},
	} {
		host, port, err := splitJoinAddr(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if host != tc.wantHost || port != tc.wantPort || gotErr != tc.wantErr {
			t.Errorf("splitJoinAddr(%q) = %q, %d, %q; want %q, %d, %q", tc.in, host, port, gotErr, tc.wantHost, tc.wantPort, tc.wantErr)
		}
	}
}

func TestParseMemberlistLine(t *testing.T) {
	for _, tc := range []struct {
		in        string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelDebug, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: b)", slog.LevelWarn, "Refuting a suspect message (from: b)"},
		{"[ERR] memberlist: failed to receive: no installed keys could decrypt the message", slog.LevelError, "failed to receive: no installed keys could decrypt the message"},
		{"[ERROR] memberlist: Failed to encrypt local state: x", slog.LevelError, "Failed to encrypt local state: x"},
		{"[ERR] memberlist: Conflicting address for a. Mine: 127.0.0.1:1 Theirs: 127.0.0.1:2", slog.LevelDebug, "Conflicting address for a. Mine: 127.0.0.1:1 Theirs: 127.0.0.1:2"},
		{"Err: Could not set the deadline: x", slog.LevelDebug, "Err: Could not set the deadline: x"},
	} {
		level, msg := parseMemberlistLine(tc.in)
		if level != tc.wantLevel || msg != tc.wantMsg {
			t.Errorf("parseMemberlistLine(%q) = %v, %q; want %v, %q", tc.in, level, msg, tc.wantLevel, tc.wantMsg)
		}
	}
}
