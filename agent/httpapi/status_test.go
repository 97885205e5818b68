package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/consul/api"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	leader, err := ta.client.Status().Leader()
	if err != nil || leader == "" || leader != ta.srv.Leader() {
		t.Errorf("Status().Leader() = %q, %v; want the server's address %q", leader, err, ta.srv.Leader())
	}
	peers, err := ta.client.Status().Peers()
	if err != nil || len(peers) != 1 || peers[0] != ta.srv.Addr() {
		t.Errorf("Status().Peers() = %v, %v; want [%s]", peers, err, ta.srv.Addr())
	}
}

func TestAgentSelf(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	self, err := ta.client.Agent().Self()
	if err != nil {
		t.Fatalf("Agent().Self(): %v", err)
	}
	checks := []struct {
		section, field string
		want           any
	}{
		{"Config", "NodeName", "test-node"},
		{"Config", "NodeID", testSelf().NodeID},
		{"Config", "Datacenter", "dc1"}, // the default
		{"Config", "Server", true},
		{"Config", "Version", "0.1.0"},
		{"Config", "Revision", "abc123"},
		{"DebugConfig", "HTTPPort", float64(8500)},
		{"DebugConfig", "ServerPort", float64(8300)},
		{"Member", "Name", "test-node"},
		{"Member", "Addr", "127.0.0.1"},
		{"Member", "Port", float64(8301)},
		{"Member", "Status", float64(1)},
	}
	for _, c := range checks {
		if got := self[c.section][c.field]; got != c.want {
			t.Errorf("Self()[%q][%q] = %#v, want %#v", c.section, c.field, got, c.want)
		}
	}
	if tags, _ := self["Member"]["Tags"].(map[string]any); tags["role"] != "consul" || tags["dc"] != "dc1" {
		t.Errorf("Self() Member.Tags = %v, want role consul, dc dc1", self["Member"]["Tags"])
	}
	for _, section := range []string{"Stats", "Meta"} {
		if _, ok := self[section]; !ok {
			t.Errorf("Self() has no %s", section)
		}
	}
	name, err := ta.client.Agent().NodeName()
	if err != nil || name != "test-node" {
		t.Errorf("Agent().NodeName() = %q, %v; want test-node", name, err)
	}
}

// TestNoLeader runs the API on a server that never gets a leader: what
// needs one fails with Consul's "No cluster leader", what does not
// (?stale, status) still answers.
func TestNoLeader(t *testing.T) {
	t.Parallel()
	cfg := kv.DefaultConfig("lonely", t.TempDir(), "127.0.0.1:0")
	cfg.Fast = true // and no Bootstrap: it never elects itself
	srv, err := kv.Open(cfg)
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	ta := serve(t, srv, nil)

	tests := []struct {
		name, method, path string
	}{
		{"get", http.MethodGet, "/v1/kv/a"},
		{"consistent get", http.MethodGet, "/v1/kv/a?consistent"},
		{"put", http.MethodPut, "/v1/kv/a"},
		{"delete", http.MethodDelete, "/v1/kv/a"},
		{"session create", http.MethodPut, "/v1/session/create"},
		{"session list", http.MethodGet, "/v1/session/list"},
		{"txn", http.MethodPut, "/v1/txn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.path == "/v1/txn" {
				body = strings.NewReader(`[{"KV":{"Verb":"set","Key":"a"}}]`)
			} else {
				body = strings.NewReader("")
			}
			resp, got := ta.do(t, tt.method, tt.path, body)
			if resp.StatusCode != http.StatusInternalServerError || !strings.HasPrefix(got, "No cluster leader: ") {
				t.Errorf("%s %s = %d %q, want 500 starting with \"No cluster leader: \"", tt.method, tt.path, resp.StatusCode, got)
			}
		})
	}
	// The official client treats it as retryable.
	_, _, err = ta.client.KV().Get("a", nil)
	if err == nil || !api.IsRetryableError(err) {
		t.Errorf("Get without a leader = %v, want a retryable error", err)
	}

	p, qm, err := ta.client.KV().Get("a", &api.QueryOptions{AllowStale: true})
	if err != nil || p != nil || qm.KnownLeader || qm.LastIndex == 0 {
		t.Errorf("stale Get without a leader = %v, known leader %v, index %d, %v; want nil, false, > 0, nil", p, qm.KnownLeader, qm.LastIndex, err)
	}
	if leader, err := ta.client.Status().Leader(); err != nil || leader != "" {
		t.Errorf("Status().Leader() without a leader = %q, %v; want \"\"", leader, err)
	}
}

func TestNewHandlerNeedsStore(t *testing.T) {
	t.Parallel()
	_, err := httpapi.NewHandler(httpapi.Config{})
	if err == nil || !strings.Contains(err.Error(), "Config.Store is nil") {
		t.Errorf("NewHandler(Config{}) = %v, want an error naming Config.Store", err)
	}
}
