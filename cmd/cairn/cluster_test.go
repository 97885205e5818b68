package main

import (
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kvtest"
)

// fakeCluster stands in for the agent's gossip and Raft behind the real
// HTTP API, so the commands run against the API they will meet. It
// records what it was asked, one line per call.
type fakeCluster struct {
	members []httpapi.Member
	raft    httpapi.RaftConfiguration

	mu    sync.Mutex
	calls []string
}

func (f *fakeCluster) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// transcript returns the calls since the last transcript and forgets them.
func (f *fakeCluster) transcript() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := strings.Join(f.calls, "\n")
	f.calls = nil
	return s
}

func (f *fakeCluster) Members() []httpapi.Member {
	f.record("members")
	return f.members
}

// Join reaches every address except those starting with "10.9.".
func (f *fakeCluster) Join(addrs []string) (int, error) {
	f.record("join %s", strings.Join(addrs, " "))
	if strings.HasPrefix(addrs[0], "10.9.") {
		return 0, fmt.Errorf("1 error occurred:\n\t* Failed to join %s: connection refused", addrs[0])
	}
	return len(addrs), nil
}

func (f *fakeCluster) Leave() error {
	f.record("leave")
	return nil
}

func (f *fakeCluster) ForceLeave(node string) error {
	f.record("force-leave %s", node)
	for _, m := range f.members {
		if m.Name == node {
			return nil
		}
	}
	return fmt.Errorf("agent: No node found with name '%s'", node)
}

func (f *fakeCluster) RaftConfiguration() (httpapi.RaftConfiguration, error) {
	f.record("raft-configuration")
	return f.raft, nil
}

// clusterAgent serves the real HTTP API with fc as its cluster and a real
// kv server as its store, and returns its address.
func clusterAgent(t *testing.T, fc *fakeCluster) string {
	t.Helper()
	h, err := httpapi.NewHandler(httpapi.Config{Store: kvtest.NewServer(t), Cluster: fc})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// TestClusterCommands runs the cluster commands against the API and
// checks their output, exit code, and what reached the cluster.
func TestClusterCommands(t *testing.T) {
	fc := &fakeCluster{
		members: []httpapi.Member{
			{Name: "web-1", Addr: "10.0.0.11", Port: 8301, Status: httpapi.MemberAlive, NodeID: "web-1-id", Build: "0.1.0:abc123"},
			{Name: "server-2", Addr: "10.0.0.2", Port: 8301, Status: httpapi.MemberFailed, Server: true, NodeID: "server-2-id", ServerPort: 8300, Build: "0.1.0:abc123"},
			{Name: "server-1", Addr: "10.0.0.1", Port: 8301, Status: httpapi.MemberAlive, Server: true, NodeID: "server-1-id", ServerPort: 8300, Build: "0.1.0:abc123"},
		},
		raft: httpapi.RaftConfiguration{Index: 9, Servers: []httpapi.RaftServer{
			{ID: "server-1-id", Node: "server-1", Address: "10.0.0.1:8300", Leader: true, Voter: true, ProtocolVersion: "3"},
			{ID: "server-2-id", Node: "server-2", Address: "10.0.0.2:8300", Voter: true, ProtocolVersion: "3"},
		}},
	}
	t.Setenv("CONSUL_HTTP_ADDR", clusterAgent(t, fc)) // the env var, as consul reads it

	const unreachable = "-http-addr=127.0.0.1:1"
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantOut   string // exact; or the golden file's name when golden is set
		golden    bool
		wantErr   string // stderr starts with this
		wantCalls string
	}{
		{name: "members", args: []string{"members"}, wantOut: "members_command", golden: true, wantCalls: "members"},
		{name: "members detailed", args: []string{"members", "-detailed"}, wantOut: "members_command_detailed", golden: true, wantCalls: "members"},
		{name: "members failed", args: []string{"members", "-status=failed"}, wantOut: "members_command_failed", golden: true, wantCalls: "members"},
		{name: "members none match", args: []string{"members", "-status=^left$"}, wantCode: 2, wantCalls: "members"},
		{name: "members bad regexp", args: []string{"members", "-status=("}, wantCode: 1,
			wantErr: "Failed to compile status regexp: error parsing regexp: missing closing ): `(`\n"},
		{name: "members extra args", args: []string{"members", "web"}, wantCode: 1, wantErr: "Error found unexpected args: [web]\n"},
		{name: "members unreachable", args: []string{"members", unreachable}, wantCode: 1,
			wantErr: "Error retrieving members: Get \"http://127.0.0.1:1/v1/agent/members\": dial tcp 127.0.0.1:1: connect: connection refused\n"},

		{name: "join", args: []string{"join", "10.0.0.3"},
			wantOut: "Successfully joined cluster by contacting 1 nodes.\n", wantCalls: "join 10.0.0.3"},
		{name: "join several", args: []string{"join", "10.0.0.3:8301", "10.9.0.1", "[fd00::4]:8301"},
			wantOut:   "Successfully joined cluster by contacting 2 nodes.\n",
			wantErr:   "Error joining address '10.9.0.1': Unexpected response code: 500 (1 error occurred:\n\t* Failed to join 10.9.0.1: connection refused)\n",
			wantCalls: "join 10.0.0.3:8301\njoin 10.9.0.1\njoin [fd00::4]:8301"},
		{name: "join fails", args: []string{"join", "10.9.0.1"}, wantCode: 1,
			wantErr:   "Error joining address '10.9.0.1': Unexpected response code: 500 (1 error occurred:\n\t* Failed to join 10.9.0.1: connection refused)\nFailed to join any nodes.\n",
			wantCalls: "join 10.9.0.1"},
		{name: "join nothing", args: []string{"join"}, wantCode: 1,
			wantErr: "At least one address to join must be specified.\n\nUsage: cairn join [options] ADDRESS...\n"},

		{name: "leave", args: []string{"leave"}, wantOut: "Graceful leave complete\n", wantCalls: "leave"},
		{name: "leave extra args", args: []string{"leave", "now"}, wantCode: 1, wantErr: "Error found unexpected args: [now]\n"},
		{name: "leave unreachable", args: []string{"leave", unreachable}, wantCode: 1,
			wantErr: "Error leaving: Put \"http://127.0.0.1:1/v1/agent/leave\": dial tcp 127.0.0.1:1: connect: connection refused\n"},

		{name: "force-leave", args: []string{"force-leave", "server-2"}, wantCalls: "force-leave server-2"},
		{name: "force-leave prune", args: []string{"force-leave", "-prune", "server-2"}, wantCalls: "force-leave server-2"},
		{name: "force-leave unknown", args: []string{"force-leave", "nope"}, wantCode: 1,
			wantErr:   "Error force leaving: Unexpected response code: 500 (agent: No node found with name 'nope')\n",
			wantCalls: "force-leave nope"},
		{name: "force-leave two nodes", args: []string{"force-leave", "a", "b"}, wantCode: 1,
			wantErr: "A single node name must be specified to force leave.\n\nUsage: cairn force-leave [options] NODE\n"},

		{name: "list-peers", args: []string{"operator", "raft", "list-peers"}, wantOut: "list_peers_command", golden: true, wantCalls: "raft-configuration"},
		{name: "list-peers stale", args: []string{"operator", "raft", "list-peers", "-stale"}, wantOut: "list_peers_command", golden: true, wantCalls: "raft-configuration"},
		{name: "list-peers unreachable", args: []string{"operator", "raft", "list-peers", unreachable}, wantCode: 1,
			wantErr: "Error getting peers: Failed to retrieve raft configuration: Get \"http://127.0.0.1:1/v1/operator/raft/configuration\": dial tcp 127.0.0.1:1: connect: connection refused\n"},
		{name: "operator alone", args: []string{"operator"}, wantCode: 1, wantErr: "Usage: cairn operator <subcommand>"},
		{name: "operator unknown", args: []string{"operator", "autopilot"}, wantCode: 1, wantErr: `cairn operator: unknown subcommand "autopilot"`},
		{name: "operator raft alone", args: []string{"operator", "raft"}, wantCode: 1, wantErr: "Usage: cairn operator raft <subcommand>"},
		{name: "operator raft unknown", args: []string{"operator", "raft", "add-peer"}, wantCode: 1, wantErr: `cairn operator raft: unknown subcommand "add-peer"`},
		{name: "operator help", args: []string{"operator", "-h"}, wantOut: operatorUsage},

		{name: "keygen extra args", args: []string{"keygen", "32"}, wantCode: 1, wantErr: "Error found unexpected args: [32]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("cairn %s = exit %d, want %d (stderr %q)", strings.Join(tt.args, " "), code, tt.wantCode, stderr.String())
			}
			if tt.golden {
				checkGolden(t, tt.wantOut, stdout.String())
			} else if stdout.String() != tt.wantOut {
				t.Errorf("cairn %s: stdout = %q, want %q", strings.Join(tt.args, " "), stdout.String(), tt.wantOut)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantErr) || (tt.wantErr == "") != (stderr.Len() == 0) {
				t.Errorf("cairn %s: stderr = %q, want it to start with %q", strings.Join(tt.args, " "), stderr.String(), tt.wantErr)
			}
			if got := fc.transcript(); got != tt.wantCalls {
				t.Errorf("cairn %s: calls = %q, want %q", strings.Join(tt.args, " "), got, tt.wantCalls)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		var stdout, stderr strings.Builder
		if code := run([]string{"keygen"}, strings.NewReader(""), &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("cairn keygen = exit %d, stderr %q; want 0 and nothing", code, stderr.String())
		}
		out := stdout.String()
		key, ok := strings.CutSuffix(out, "\n")
		if !ok {
			t.Fatalf("cairn keygen printed %q, want one line", out)
		}
		raw, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(raw) != 32 {
			t.Errorf("cairn keygen printed %q: decodes to %d bytes, %v; want 32 bytes of standard base64", key, len(raw), err)
		}
		seen[key] = true
	}
	if len(seen) != 2 {
		t.Errorf("cairn keygen printed the same key twice: %v", seen)
	}
}
