package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"testing"

	"github.com/cairn-dev/cairn/agent/checks"
)

// TestConditionCheck: a check the agent sets from its own condition shows
// on the server's "consul" service (taking it out of passing answers),
// goes when cleared, and is never written to the data dir, so a restart
// shows only what the agent derives again.
func TestConditionCheck(t *testing.T) {
	dir := t.TempDir()
	opts := func(c *Config) {
		c.DataDir = dir
		c.ServerService = &Service{ID: "consul", Name: "consul", Port: 8300, Weights: Weights{1, 1}}
	}
	c := newTestCatalog(t, opts)
	if got := instances(c, "consul"); len(got) != 1 || got[0] != "self/consul/passing" {
		t.Fatalf("before: consul instances = %v, want [self/consul/passing]", got)
	}

	disk := checks.Definition{ID: "cairn-disk", Name: "Data dir disk", ServiceID: "consul",
		Status: checks.Critical, Output: "disk full since 2026-12-02T01:00:00Z"}
	if err := c.SetConditionCheck(disk); err != nil {
		t.Fatal(err)
	}
	if got := instances(c, "consul"); len(got) != 1 || got[0] != "self/consul/critical" {
		t.Errorf("disk full: consul instances = %v, want [self/consul/critical]", got)
	}
	_, chs := c.ServiceChecks(nil, "consul", Filter{})
	if len(chs) != 1 || chs[0].CheckID != "cairn-disk" || chs[0].Output != disk.Output {
		t.Errorf("consul's checks = %+v, want the disk check with its output", chs)
	}

	// Compaction rewrites the log from what is held: the condition
	// check must not be in it.
	c.mu.Lock()
	err := c.store.compact(c.logLinesLocked())
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "catalog", logName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "cairn-disk") {
		t.Errorf("the condition check was written to the catalog log:\n%s", b)
	}
	if got := instances(newTestCatalog(t, opts), "consul"); len(got) != 1 || got[0] != "self/consul/passing" {
		t.Errorf("after a restart: consul instances = %v, want [self/consul/passing] (the condition is derived again, not stored)", got)
	}

	if err := c.ClearConditionCheck("cairn-disk"); err != nil {
		t.Fatal(err)
	}
	if got := instances(c, "consul"); len(got) != 1 || got[0] != "self/consul/passing" {
		t.Errorf("cleared: consul instances = %v, want [self/consul/passing]", got)
	}
	if err := c.ClearConditionCheck("cairn-disk"); err != nil {
		t.Errorf("clearing twice: %v", err)
	}

	// A registered check of the same ID is not the agent's to replace,
	// and a condition check needs a service that is there.
	if err := c.RegisterCheck(checks.Definition{ID: "mine", Name: "mine", TTL: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConditionCheck(checks.Definition{ID: "mine", Name: "x", Status: checks.Critical}); err == nil {
		t.Error("SetConditionCheck replaced a registered check")
	}
	if err := c.SetConditionCheck(checks.Definition{ID: "y", Name: "y", ServiceID: "nope", Status: checks.Critical}); err == nil {
		t.Error("SetConditionCheck took a check of a service that is not there")
	}
}
