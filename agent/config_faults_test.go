package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigFaultKeys: performance.rpc_hold_timeout and the limits block,
// in HCL and JSON, as Consul writes them; bad values name the key.
func TestConfigFaultKeys(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       func(*Config)
		err        string
	}{
		{"defaults", ``, func(c *Config) {}, ""},
		{"hcl", "performance { rpc_hold_timeout = \"3s\" }\nlimits {\n  http_max_conns_per_client = 50\n  max_blocking_queries = 1000\n}\n", func(c *Config) {
			c.RPCHoldTimeout = 3 * time.Second
			c.Limits = Limits{HTTPMaxConnsPerClient: 50, MaxBlockingQueries: 1000}
		}, ""},
		{"json", `{"performance": {"rpc_hold_timeout": "10s"}, "limits": {"http_max_conns_per_client": 0}}`, func(c *Config) {
			c.RPCHoldTimeout = 10 * time.Second
			c.Limits.HTTPMaxConnsPerClient = 0
		}, ""},
		{"bad duration", `performance { rpc_hold_timeout = "7" }`, nil, `performance.rpc_hold_timeout = "7" is not a duration`},
		{"raft log store", "raft_logstore {\n  backend = \"wal\"\n  verification { enabled = true }\n}\n", func(c *Config) {
			c.RaftLogStore = "wal"
		}, ""},
		{"bad raft log store", `raft_logstore { backend = "rocks" }`, nil, `raft_logstore.backend = "rocks" is not a log store; use "wal" (the default) or "boltdb"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.hcl")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			got := DefaultConfig()
			err := LoadConfigFile(&got, path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tc.want(&want)
			if got.RPCHoldTimeout != want.RPCHoldTimeout || got.Limits != want.Limits {
				t.Fatalf("hold %v limits %+v; want %v %+v", got.RPCHoldTimeout, got.Limits, want.RPCHoldTimeout, want.Limits)
			}
		})
	}
	c := DefaultConfig()
	c.DataDir = t.TempDir()
	c.Limits.HTTPMaxConnsPerClient = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http_max_conns_per_client") {
		t.Fatalf("Validate with a negative connection limit = %v", err)
	}
}
