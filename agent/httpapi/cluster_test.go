package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kvtest"
)

// fakeCluster stands in for gossip and Raft, which live outside httpapi
// in the agent. It records what it was asked, one line per call.
type fakeCluster struct {
	members []httpapi.Member
	raft    httpapi.RaftConfiguration
	raftErr error
	refuse  string // Join fails for this address
	quiet   bool   // record nothing (the fuzzer calls it endlessly)

	mu    sync.Mutex
	calls []string
}

func (f *fakeCluster) record(format string, args ...any) {
	if f.quiet {
		return
	}
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
	return slices.Clone(f.members)
}

func (f *fakeCluster) Join(addrs []string) (int, error) {
	f.record("join %s", strings.Join(addrs, " "))
	for _, a := range addrs {
		if a == f.refuse {
			return 0, fmt.Errorf("1 error occurred:\n\t* Failed to join %s: dial tcp %s: connect: connection refused", a, a)
		}
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
	return f.raft, f.raftErr
}

// testMembers are three agents, deliberately not in name order.
func testMembers() []httpapi.Member {
	return []httpapi.Member{
		{Name: "web-1", Addr: "10.0.0.11", Port: 8301, Status: httpapi.MemberAlive, NodeID: "22222222-2222-2222-2222-222222222222", Build: "0.1.0:abc123"},
		{Name: "server-2", Addr: "10.0.0.2", Port: 8301, Status: httpapi.MemberFailed, Server: true, Datacenter: "dc1", NodeID: "11111111-1111-1111-1111-111111111111", ServerPort: 8300, Build: "0.1.0:abc123"},
		{Name: "test-node", Addr: "127.0.0.1", Port: 8301, Status: httpapi.MemberAlive, Server: true, NodeID: testSelf().NodeID, ServerPort: 8300, Build: "0.1.0:abc123"},
	}
}

// newClusterAPI serves the handler with fc as its Cluster and a real kv
// server as its Store.
func newClusterAPI(t *testing.T, fc *fakeCluster) *testAPI {
	t.Helper()
	return serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: testSelf(), Cluster: fc}, nil)
}

func TestAgentMembers(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{members: testMembers()}
	ta := newClusterAPI(t, fc)

	got, err := ta.client.Agent().Members(false)
	if err != nil {
		t.Fatalf("Agent().Members(false): %v", err)
	}
	member := func(name, addr string, status int, tags map[string]string) *api.AgentMember {
		return &api.AgentMember{
			Name: name, Addr: addr, Port: 8301, Tags: tags, Status: status,
			ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2,
			DelegateMin: 2, DelegateMax: 5, DelegateCur: 4,
		}
	}
	serverTags := func(id string) map[string]string {
		return map[string]string{
			"role": "consul", "dc": "dc1", "id": id, "port": "8300", "raft_vsn": "3",
			"build": "0.1.0:abc123", "segment": "", "vsn": "2", "vsn_min": "2", "vsn_max": "3",
		}
	}
	want := []*api.AgentMember{ // sorted by name
		member("server-2", "10.0.0.2", 4 /* failed */, serverTags("11111111-1111-1111-1111-111111111111")),
		member("test-node", "127.0.0.1", 1 /* alive */, serverTags(testSelf().NodeID)),
		member("web-1", "10.0.0.11", 1 /* alive */, map[string]string{
			"role": "node", "dc": "dc1", "id": "22222222-2222-2222-2222-222222222222",
			"build": "0.1.0:abc123", "segment": "", "vsn": "2", "vsn_min": "2", "vsn_max": "3",
		}),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Agent().Members(false) mismatch (-want +got):\n%s", diff)
	}
	if !got[0].IsConsulServer() || got[2].IsConsulServer() {
		t.Errorf("IsConsulServer() = %v, %v; want server-2 a server, web-1 not", got[0].IsConsulServer(), got[2].IsConsulServer())
	}

	// /v1/agent/self's Member is this agent's entry in the list.
	self, err := ta.client.Agent().Self()
	if err != nil {
		t.Fatalf("Agent().Self(): %v", err)
	}
	selfTags := map[string]string{}
	for k, v := range self["Member"]["Tags"].(map[string]any) {
		selfTags[k] = v.(string)
	}
	if diff := cmp.Diff(got[1].Tags, selfTags); diff != "" {
		t.Errorf("Self() Member.Tags differ from test-node's in Members() (-members +self):\n%s", diff)
	}

	if got := fc.transcript(); got != "members" {
		t.Errorf("calls = %q, want members", got)
	}
	// cairn has no WAN pool: its WAN members are the alive servers,
	// named <node>.<dc> as Consul's WAN pool names them (an empty list
	// makes `consul members -wan` exit 2 without a word).
	wan, err := ta.client.Agent().Members(true)
	if err != nil || len(wan) != 1 || wan[0].Name != "test-node.dc1" || wan[0].Tags["role"] != "consul" {
		t.Errorf("Agent().Members(true) = %v, %v; want test-node.dc1 alone (server-2 failed, web-1 a client)", wan, err)
	}
	if got := fc.transcript(); got != "members" {
		t.Errorf("calls for ?wan=1 = %q, want members", got)
	}
}

func TestAgentMembersNoneKnown(t *testing.T) {
	t.Parallel()
	ta := newClusterAPI(t, &fakeCluster{})
	resp, body := ta.do(t, http.MethodGet, "/v1/agent/members", nil)
	if resp.StatusCode != http.StatusOK || body != "[]" {
		t.Errorf("GET /v1/agent/members with no members = %d %s, want 200 []", resp.StatusCode, body)
	}
}

// TestClusterWrites drives join, leave and force-leave through the
// official client and checks what reached the cluster.
func TestClusterWrites(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{members: testMembers(), refuse: "10.9.9.9:8301"}
	ta := newClusterAPI(t, fc)
	agent := ta.client.Agent()

	tests := []struct {
		name      string
		do        func() error
		wantCode  int    // 0: success
		wantBody  string // the error body contains this
		wantCalls string
	}{
		{name: "join", do: func() error { return agent.Join("10.0.0.3:8301", false) },
			wantCalls: "join 10.0.0.3:8301"},
		{name: "join host only", do: func() error { return agent.Join("10.0.0.3", false) },
			wantCalls: "join 10.0.0.3"},
		{name: "join ipv6", do: func() error { return agent.Join("[fd00::3]:8301", false) },
			wantCalls: "join [fd00::3]:8301"},
		{name: "join refused", do: func() error { return agent.Join("10.9.9.9:8301", false) },
			wantCode: 500, wantBody: "Failed to join 10.9.9.9:8301: dial tcp 10.9.9.9:8301: connect: connection refused",
			wantCalls: "join 10.9.9.9:8301"},
		{name: "join wan", do: func() error { return agent.Join("10.0.0.3:8302", true) },
			wantCode: 400, wantBody: "WAN join is not supported: cairn has no WAN gossip pool"},
		{name: "leave", do: agent.Leave, wantCalls: "leave"},
		{name: "force-leave", do: func() error { return agent.ForceLeave("server-2") },
			wantCalls: "force-leave server-2"},
		{name: "force-leave prune", do: func() error { return agent.ForceLeavePrune("server-2") },
			wantCalls: "force-leave server-2"},
		{name: "force-leave unknown", do: func() error { return agent.ForceLeave("nope") },
			wantCode: 500, wantBody: "agent: No node found with name 'nope'", wantCalls: "force-leave nope"},
		{name: "force-leave wan", do: func() error { return agent.ForceLeaveOpts("server-2", api.ForceLeaveOpts{WAN: true}) },
			wantCode: 400, wantBody: "WAN force-leave is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			checkStatusError(t, err, tt.wantCode, tt.wantBody)
			if got := fc.transcript(); got != tt.wantCalls {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// checkStatusError checks a consul/api error: nil when wantCode is 0,
// else a StatusError with that code whose body contains wantBody.
func checkStatusError(t *testing.T, err error, wantCode int, wantBody string) {
	t.Helper()
	if wantCode == 0 {
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
		return
	}
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != wantCode || !strings.Contains(se.Body, wantBody) {
		t.Errorf("err = %v, want status %d with a body containing %q", err, wantCode, wantBody)
	}
}

func TestOperatorRaftConfiguration(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{raft: httpapi.RaftConfiguration{
		Index: 42,
		Servers: []httpapi.RaftServer{
			{ID: "11111111-1111-1111-1111-111111111111", Node: "server-1", Address: "10.0.0.1:8300", Leader: true, Voter: true, ProtocolVersion: "3"},
			{ID: "22222222-2222-2222-2222-222222222222", Node: "server-2", Address: "10.0.0.2:8300", Voter: false, ProtocolVersion: "3"},
		},
	}}
	ta := newClusterAPI(t, fc)

	got, err := ta.client.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatalf("Operator().RaftGetConfiguration: %v", err)
	}
	want := &api.RaftConfiguration{
		Index: 42,
		Servers: []*api.RaftServer{
			{ID: "11111111-1111-1111-1111-111111111111", Node: "server-1", Address: "10.0.0.1:8300", Leader: true, Voter: true, ProtocolVersion: "3"},
			{ID: "22222222-2222-2222-2222-222222222222", Node: "server-2", Address: "10.0.0.2:8300", Voter: false, ProtocolVersion: "3"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RaftGetConfiguration mismatch (-want +got):\n%s", diff)
	}

	resp, _ := ta.do(t, http.MethodGet, "/v1/operator/raft/configuration?stale", nil)
	checkReadHeaders(t, resp, "stale")
	if idx := headerIndex(t, resp); idx != 42 {
		t.Errorf("X-Consul-Index = %d, want the configuration's index 42", idx)
	}
}

func TestOperatorRaftConfigurationEdges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cluster    *fakeCluster
		wantCode   int
		wantBody   string
		wantIndex  string
		wantLeader string
	}{
		{name: "empty", cluster: &fakeCluster{},
			wantCode: 200, wantBody: `{"Servers":[],"Index":0}`, wantIndex: "1", wantLeader: "false"},
		{name: "no leader", cluster: &fakeCluster{raft: httpapi.RaftConfiguration{Index: 7, Servers: []httpapi.RaftServer{{ID: "a", Node: "s1", Address: "10.0.0.1:8300", Voter: true, ProtocolVersion: "3"}}}},
			wantCode: 200, wantBody: `{"Servers":[{"ID":"a","Node":"s1","Address":"10.0.0.1:8300","Leader":false,"ProtocolVersion":"3","Voter":true}],"Index":7}`, wantIndex: "7", wantLeader: "false"},
		{name: "error", cluster: &fakeCluster{raftErr: errors.New("forward to servers: no known servers; join a server first (cairn join <address>)")},
			wantCode: 500, wantBody: "forward to servers: no known servers; join a server first (cairn join <address>)"},
	}
	store := kvtest.NewServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := serveConfig(t, httpapi.Config{Store: store, Self: testSelf(), Cluster: tt.cluster}, nil)
			resp, body := ta.do(t, http.MethodGet, "/v1/operator/raft/configuration", nil)
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /v1/operator/raft/configuration = %d %s, want %d %s", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if got := resp.Header.Get("X-Consul-Index"); got != tt.wantIndex {
				t.Errorf("X-Consul-Index = %q, want %q", got, tt.wantIndex)
			}
			if got := resp.Header.Get("X-Consul-KnownLeader"); got != tt.wantLeader {
				t.Errorf("X-Consul-KnownLeader = %q, want %q", got, tt.wantLeader)
			}
		})
	}
}

// TestClusterRefusals pins the refusals of the cluster endpoints, with a
// Cluster and without one.
func TestClusterRefusals(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{members: testMembers()}
	with := newClusterAPI(t, fc)
	without := serve(t, kvtest.NewServer(t), nil)

	const noCluster = "cluster membership is not available on this agent"
	tests := []struct {
		name     string
		ta       *testAPI
		method   string
		path     string
		wantCode int
		wantBody string // the body must contain this
	}{
		{"members put", with, "PUT", "/v1/agent/members", 405, "method PUT not allowed"},
		{"join get", with, "GET", "/v1/agent/join/10.0.0.3", 405, "method GET not allowed"},
		{"join post", with, "POST", "/v1/agent/join/10.0.0.3", 405, "method POST not allowed"},
		{"leave get", with, "GET", "/v1/agent/leave", 405, "method GET not allowed"},
		{"force-leave delete", with, "DELETE", "/v1/agent/force-leave/web-1", 405, "method DELETE not allowed"},
		{"raft configuration put", with, "PUT", "/v1/operator/raft/configuration", 405, "method PUT not allowed"},
		{"join without address", with, "PUT", "/v1/agent/join/", 400, "Missing address to join: put it in the path, e.g. /v1/agent/join/10.0.0.2:8301"},
		{"join path without slash", with, "PUT", "/v1/agent/join", 404, "no API endpoint at /v1/agent/join"},
		{"force-leave without node", with, "PUT", "/v1/agent/force-leave/", 400, "Missing node name to force-leave"},
		{"force-leave bare wan", with, "PUT", "/v1/agent/force-leave/web-1?wan", 400, "WAN force-leave is not supported"},
		{"raft configuration bad wait", with, "GET", "/v1/operator/raft/configuration?index=1&wait=soon", 400, `Invalid wait time: ?wait="soon"`},
		{"raft configuration other dc", with, "GET", "/v1/operator/raft/configuration?dc=dc2", 500, "No path to datacenter"},

		{"members without cluster", without, "GET", "/v1/agent/members", 500, noCluster},
		{"join without cluster", without, "PUT", "/v1/agent/join/10.0.0.3", 500, noCluster},
		{"leave without cluster", without, "PUT", "/v1/agent/leave", 500, noCluster},
		{"force-leave without cluster", without, "PUT", "/v1/agent/force-leave/web-1", 500, noCluster},
		{"raft configuration without cluster", without, "GET", "/v1/operator/raft/configuration", 500, noCluster},
		{"leave get without cluster", without, "GET", "/v1/agent/leave", 405, "method GET not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.ta.do(t, tt.method, tt.path, nil)
			if resp.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	// None of the refusals reached the cluster.
	if got := fc.transcript(); got != "" {
		t.Errorf("calls after refusals = %q, want none", got)
	}
}

// TestClusterGolden pins the JSON of /v1/agent/members and
// /v1/operator/raft/configuration.
func TestClusterGolden(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{members: testMembers(), raft: httpapi.RaftConfiguration{
		Index: 42,
		Servers: []httpapi.RaftServer{
			{ID: "11111111-1111-1111-1111-111111111111", Node: "server-1", Address: "10.0.0.1:8300", Leader: true, Voter: true, ProtocolVersion: "3"},
			{ID: "22222222-2222-2222-2222-222222222222", Node: "server-2", Address: "10.0.0.2:8300", Voter: true, ProtocolVersion: "3"},
		},
	}}
	ta := newClusterAPI(t, fc)
	tests := []struct{ name, path string }{
		{"agent_members", "/v1/agent/members"},
		{"operator_raft_configuration", "/v1/operator/raft/configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ta.do(t, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %s", tt.path, resp.StatusCode, body)
			}
			var out bytes.Buffer
			if err := json.Indent(&out, []byte(body), "", "  "); err != nil {
				t.Fatalf("GET %s: not JSON: %v: %s", tt.path, err, body)
			}
			out.WriteByte('\n')
			checkGolden(t, tt.name, out.Bytes())
		})
	}
}

func TestMemberStatusString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    httpapi.MemberStatus
		want string
	}{
		{httpapi.MemberNone, "none"},
		{httpapi.MemberAlive, "alive"},
		{httpapi.MemberLeaving, "leaving"},
		{httpapi.MemberLeft, "left"},
		{httpapi.MemberFailed, "failed"},
		{httpapi.MemberStatus(7), "unknown MemberStatus 7"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("MemberStatus(%d).String() = %q, want %q", int(tt.s), got, tt.want)
		}
	}
}

// TestAgentMembersFilter: /v1/agent/members takes ?filter= over
// api.AgentMember's selectors, as `consul members -filter` sends it.
func TestAgentMembersFilter(t *testing.T) {
	t.Parallel()
	ta := newClusterAPI(t, &fakeCluster{members: testMembers()})
	tests := []struct {
		filter  string
		want    []string
		wantErr string
	}{
		{filter: `Tags["role"] == "consul"`, want: []string{"server-2", "test-node"}},
		{filter: `Status == 4`, want: []string{"server-2"}},
		{filter: `Name matches "^web"`, want: []string{"web-1"}},
		{filter: `Nmae == "web-1"`, wantErr: `Unexpected response code: 400 (error finding value in datum: /Nmae at part 0: couldn't find key: struct field with name "Nmae")`},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			ms, err := ta.client.Agent().MembersOpts(api.MembersOpts{Filter: tc.filter})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("MembersOpts(filter %s) = %v, want error %s", tc.filter, err, tc.wantErr)
				}
				return
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if err != nil || !slices.Equal(names, tc.want) {
				t.Errorf("MembersOpts(filter %s) = %q, %v; want %q", tc.filter, names, err, tc.want)
			}
		})
	}
}
