//go:build unix

package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestTxnCrashAtomic kills the agent (SIGKILL, from inside, at a crash
// point of agent/catalogtxn chosen by CAIRN_TEST_TXN_CRASH) in the middle
// of a /v1/txn that mixes KV and catalog operations, restarts it on the
// same data dir, and checks that either every operation of the
// transaction is visible or none is, and that no intent is left behind.
func TestTxnCrashAtomic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point string // "" runs the transaction to the end
		want  string // "all" or "none"
	}{
		{"", "all"},
		{"prepared", "none"}, // killed before the Raft transaction is sent
		{"committed", "all"}, // killed right after the Raft commit
		{"applying", "all"},  // killed after the first catalog write
		{"applied", "all"},   // killed before the intent is deleted
	}
	for _, tc := range tests {
		name := tc.point
		if name == "" {
			name = "no-crash"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			p := freePorts(t)
			args := append(serverArgs(dir, p), "-node", "n1")
			cmd := exec.Command(cairnBin, args...)
			if tc.point != "" {
				cmd.Env = append(cmd.Environ(), "CAIRN_TEST_TXN_CRASH="+tc.point)
			}
			first := startCommand(t, "crashing run", cmd)
			c := first.waitLeader(p.httpAddr())

			// Before: a service the transaction deletes.
			if _, err := c.Catalog().Register(&api.CatalogRegistration{
				Node: "ext0", Address: "10.0.0.9",
				Service: &api.AgentService{ID: "gone", Service: "gone", Port: 1},
			}, nil); err != nil {
				t.Fatal(err)
			}
			ok, resp, _, err := c.Txn().Txn(txnOps(), nil)
			if tc.point == "" {
				if err != nil || !ok {
					t.Fatalf("Txn = %v, %+v, %v; want it to commit", ok, resp, err)
				}
			} else {
				if err == nil {
					t.Fatalf("Txn answered (%v, %+v) although the agent was to die at %q", ok, resp, tc.point)
				}
				if code := first.wait(20 * time.Second); code != -1 {
					t.Fatalf("crashing run exited with %d, want killed by SIGKILL", code)
				}
				second := start(t, "after kill -9", args...)
				c = second.waitLeader(p.httpAddr())
			}
			eventually(t, "the transaction "+tc.want+" visible and its intent gone", 20*time.Second, func() (bool, string) {
				state, err := txnState(c)
				if err != nil {
					return false, err.Error()
				}
				return state == tc.want, state
			})
		})
	}
}

// txnOps are the transaction under test: two keys, an external node
// with a service and its check, and the deletion of service "gone".
func txnOps() api.TxnOps {
	return api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "txn/a", Value: []byte("1")}},
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "ext1", Address: "10.0.0.1"}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "ext1", Service: api.AgentService{ID: "svc1", Service: "svc", Port: 80}}},
		{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: "ext1", CheckID: "chk1", Name: "chk", ServiceID: "svc1", Status: api.HealthPassing}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: "ext0", Service: api.AgentService{ID: "gone"}}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "txn/b", Value: []byte("2")}},
	}
}

// txnState reads the effects of txnOps: "all" when every one is visible,
// "none" when none is, and otherwise a list of what is; an intent still
// under _cairn/txn/ makes the state not final.
func txnState(c *api.Client) (string, error) {
	q := &api.QueryOptions{RequireConsistent: true}
	var seen []string
	for _, k := range []string{"txn/a", "txn/b"} {
		p, _, err := c.KV().Get(k, q)
		if err != nil {
			return "", err
		}
		seen = append(seen, fmt.Sprintf("%s=%v", k, p != nil))
	}
	node, _, err := c.Catalog().Node("ext1", nil)
	if err != nil {
		return "", err
	}
	svc := node != nil && node.Services["svc1"] != nil
	seen = append(seen, fmt.Sprintf("ext1=%v", node != nil), fmt.Sprintf("svc1=%v", svc))
	checks, _, err := c.Health().Node("ext1", nil)
	if err != nil {
		return "", err
	}
	chk := false
	for _, h := range checks {
		chk = chk || h.CheckID == "chk1" && h.ServiceID == "svc1"
	}
	seen = append(seen, fmt.Sprintf("chk1=%v", chk))
	old, _, err := c.Catalog().Node("ext0", nil)
	if err != nil {
		return "", err
	}
	seen = append(seen, fmt.Sprintf("gone-deleted=%v", old == nil || old.Services["gone"] == nil))
	intents, _, err := c.KV().Keys("_cairn/txn/", "", q)
	if err != nil {
		return "", err
	}
	state := strings.Join(seen, " ")
	if len(intents) > 0 {
		return state + " intents=" + strings.Join(intents, ","), nil
	}
	switch {
	case !strings.Contains(state, "=false"):
		return "all", nil
	case !strings.Contains(state, "=true"):
		return "none", nil
	}
	return state, nil
}
