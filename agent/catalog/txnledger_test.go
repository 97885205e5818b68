package catalog

import (
	"errors"
	"slices"
	"testing"
)

// TestTxnLedgerSurvivesRestart: applied intents recorded in the ledger
// are there after a restart (the log replayed, then compacted at start),
// and forgotten ones are not.
func TestTxnLedgerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	for _, id := range []string{"a", "b", "c"} {
		if err := c.MarkTxnApplied(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ForgetTxn("b"); err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // the second start reads the compacted log
		c = newTestCatalog(t, withDir)
		got := c.AppliedTxns()
		slices.Sort(got)
		if !slices.Equal(got, []string{"a", "c"}) {
			t.Errorf("start %d: AppliedTxns() = %v, want [a c]", round+1, got)
		}
	}
}

// TestCheckTxn: the dry run refuses what Register would, naming the
// step, and counts the services of earlier steps.
func TestCheckTxn(t *testing.T) {
	c := newTestCatalog(t)
	svc := &Service{ID: "s1", Name: "s"}
	tests := []struct {
		name  string
		steps []TxnStep
		step  int // -1: accepted
	}{
		{"service then its check", []TxnStep{
			{Register: &Registration{Node: Node{Node: "ext", Address: "10.0.0.2"}, Service: svc}},
			{Register: &Registration{Node: Node{Node: "ext"}, SkipNodeUpdate: true, Checks: []*Check{{CheckID: "c", ServiceID: "s1", Status: StatusPassing}}}},
		}, -1},
		{"check of an unknown service", []TxnStep{
			{Register: &Registration{Node: Node{Node: "ext", Address: "10.0.0.2"}}},
			{Register: &Registration{Node: Node{Node: "ext"}, SkipNodeUpdate: true, Checks: []*Check{{CheckID: "c", ServiceID: "nosuch"}}}},
		}, 1},
		{"check of a service deregistered before", []TxnStep{
			{Register: &Registration{Node: Node{Node: "ext", Address: "10.0.0.2"}, Service: svc}},
			{Deregister: &Deregistration{Node: "ext"}},
			{Register: &Registration{Node: Node{Node: "ext", Address: "10.0.0.2"}, Checks: []*Check{{CheckID: "c", ServiceID: "s1"}}}},
		}, 2},
		{"node without address", []TxnStep{{Register: &Registration{Node: Node{Node: "ext"}}}}, 0},
		{"bad status", []TxnStep{{Register: &Registration{Node: Node{Node: "ext", Address: "10.0.0.2"}, Checks: []*Check{{CheckID: "c", Status: "green"}}}}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.CheckTxn(tc.steps)
			var se *TxnStepError
			switch {
			case tc.step < 0 && err != nil:
				t.Errorf("CheckTxn = %v, want accepted", err)
			case tc.step >= 0 && (!errors.As(err, &se) || se.Step != tc.step):
				t.Errorf("CheckTxn = %v, want refused at step %d", err, tc.step)
			}
		})
	}
	if _, n, _ := c.Node(nil, "ext"); n != nil {
		t.Errorf("CheckTxn wrote node ext")
	}
}
