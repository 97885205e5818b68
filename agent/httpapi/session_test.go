package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"
)

func TestSessionEndpoints(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	sess := ta.client.Session()

	id, _, err := sess.Create(&api.SessionEntry{Name: "web-lock", TTL: "10s", LockDelay: 250 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	info, qm, err := sess.Info(id, nil)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	want := &api.SessionEntry{
		ID:         id,
		Name:       "web-lock",
		Node:       "test-node",
		LockDelay:  250 * time.Millisecond,
		Behavior:   api.SessionBehaviorRelease,
		TTL:        "10s",
		NodeChecks: []string{"serfHealth"},
	}
	if diff := cmp.Diff(want, info, cmpopts.IgnoreFields(api.SessionEntry{}, "CreateIndex")); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
	if info.CreateIndex == 0 || qm.LastIndex == 0 || !qm.KnownLeader {
		t.Errorf("Info CreateIndex %d, meta index %d known leader %v; want positive, positive, true", info.CreateIndex, qm.LastIndex, qm.KnownLeader)
	}

	// Defaults: this node, serfHealth, lock-delay 15s, release.
	def, _, err := sess.Create(nil, nil)
	if err != nil {
		t.Fatalf("Create(nil): %v", err)
	}
	if got, _, _ := sess.Info(def, nil); got == nil || got.LockDelay != 15*time.Second || got.Behavior != "release" || got.Node != "test-node" {
		t.Errorf("Info(default session) = %+v, want node test-node, LockDelay 15s, Behavior release", got)
	}
	noChecks, _, err := sess.CreateNoChecks(&api.SessionEntry{Name: "no-checks"}, nil)
	if err != nil {
		t.Fatalf("CreateNoChecks: %v", err)
	}
	if got, _, _ := sess.Info(noChecks, nil); got == nil || len(got.NodeChecks) != 0 || len(got.Checks) != 0 {
		t.Errorf("Info(CreateNoChecks session) = %+v, want no checks", got)
	}

	list, qm, err := sess.List(nil)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got := sessionIDs(list); !cmp.Equal(got, sortedIDs(id, def, noChecks)) {
		t.Errorf("List IDs = %v, want %v", got, sortedIDs(id, def, noChecks))
	}
	if qm.LastIndex == 0 {
		t.Error("List index = 0, want > 0")
	}
	node, _, err := sess.Node("test-node", nil)
	if err != nil || len(node) != 3 {
		t.Errorf("Node(test-node) = %d sessions, %v; want 3", len(node), err)
	}
	other, _, err := sess.Node("other-node", nil)
	if err != nil || len(other) != 0 {
		t.Errorf("Node(other-node) = %+v, %v; want none", other, err)
	}

	renewed, _, err := sess.Renew(id, nil)
	if err != nil || renewed == nil || renewed.ID != id || renewed.TTL != "10s" {
		t.Errorf("Renew = %+v, %v; want the session with TTL 10s", renewed, err)
	}

	if _, err := sess.Destroy(id, nil); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if got, _, err := sess.Info(id, nil); err != nil || got != nil {
		t.Errorf("Info after Destroy = %+v, %v; want nil", got, err)
	}
	// The client reads a 404 on renew as "expired".
	if got, _, err := sess.Renew(id, nil); err != nil || got != nil {
		t.Errorf("Renew after Destroy = %+v, %v; want nil, nil", got, err)
	}
	resp, body := ta.do(t, http.MethodPut, "/v1/session/renew/"+id, nil)
	if wantBody := "Session id '" + id + "' not found"; resp.StatusCode != http.StatusNotFound || body != wantBody {
		t.Errorf("PUT /v1/session/renew/<destroyed> = %d %q, want 404 %q", resp.StatusCode, body, wantBody)
	}
	// Info of a missing session is 200 with an empty list.
	resp, body = ta.do(t, http.MethodGet, "/v1/session/info/"+id, nil)
	if resp.StatusCode != http.StatusOK || body != "[]" {
		t.Errorf("GET /v1/session/info/<destroyed> = %d %q, want 200 []", resp.StatusCode, body)
	}
	checkReadHeaders(t, resp, "leader")
	// Destroying twice succeeds, as in Consul.
	if _, err := sess.Destroy(id, nil); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

// TestSessionJSON pins the session fields and their JSON types.
func TestSessionJSON(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	resp, body := ta.do(t, http.MethodPut, "/v1/session/create", strings.NewReader(`{"Name":"n","LockDelay":5,"Behavior":"delete"}`))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, `{"ID":"`) {
		t.Fatalf("PUT /v1/session/create = %d %s, want 200 {\"ID\":...}", resp.StatusCode, body)
	}
	list, _, err := ta.client.Session().List(nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want one session", list, err)
	}
	_, body = ta.do(t, http.MethodGet, "/v1/session/info/"+list[0].ID, nil)
	for _, field := range []string{
		`"ID":"` + list[0].ID + `"`, `"Name":"n"`, `"Node":"test-node"`,
		`"LockDelay":5000000000`, // a bare 5 is five seconds, in nanoseconds
		`"Behavior":"delete"`, `"TTL":""`, `"NodeChecks":["serfHealth"]`,
		`"ServiceChecks":null`, `"CreateIndex":`, `"ModifyIndex":`,
	} {
		if !strings.Contains(body, field) {
			t.Errorf("session JSON %s lacks %s", body, field)
		}
	}
}

// TestSessionBehavior: destroying a session releases its locks
// (release) or deletes the keys (delete).
func TestSessionBehavior(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	tests := []struct {
		behavior  string
		wantEntry bool
	}{
		{api.SessionBehaviorRelease, true},
		{api.SessionBehaviorDelete, false},
	}
	for _, tt := range tests {
		t.Run(tt.behavior, func(t *testing.T) {
			key := "held/" + tt.behavior
			id, _, err := ta.client.Session().Create(&api.SessionEntry{Behavior: tt.behavior, LockDelay: time.Millisecond}, nil)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			ok, _, err := ta.client.KV().Acquire(&api.KVPair{Key: key, Value: []byte("v"), Session: id}, nil)
			if err != nil || !ok {
				t.Fatalf("Acquire = %v, %v; want true", ok, err)
			}
			if _, err := ta.client.Session().Destroy(id, nil); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			p := ta.get(t, key)
			switch {
			case tt.wantEntry && (p == nil || p.Session != ""):
				t.Errorf("after Destroy: %+v, want the key kept without a holder", p)
			case !tt.wantEntry && p != nil:
				t.Errorf("after Destroy: %+v, want the key deleted", p)
			}
		})
	}
}

func TestSessionBlockingList(t *testing.T) {
	t.Parallel()
	observe, arrived := signal(blockingRead("/v1/session/node/test-node"))
	ta := newTestAPI(t, observe)
	_, qm, err := ta.client.Session().Node("test-node", nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		idx uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		list, qm2, err := ta.client.Session().Node("test-node", &api.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: 30 * time.Second})
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{len(list), qm2.LastIndex, nil}
	}()
	waitSignal(t, arrived, 1, "the blocking session list to reach the server")
	if _, _, err := ta.client.Session().Create(nil, nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.n != 1 || r.idx <= qm.LastIndex {
		t.Errorf("blocking Node() = %d sessions index %d, %v; want 1 session, index > %d", r.n, r.idx, r.err, qm.LastIndex)
	}
}

func sessionIDs(list []*api.SessionEntry) []string {
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return sortedIDs(ids...)
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
