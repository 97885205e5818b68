package catalog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cairn-dev/cairn/agent/checks"
)

func localIDs(c *Catalog) []string {
	var out []string
	for _, s := range c.LocalServices() {
		out = append(out, s.ID)
	}
	return out
}

// TestLogTornLastLine: a crash in the middle of a write leaves a torn
// last line, never acknowledged; the next start cuts it off and goes on,
// and new lines follow a whole one.
func TestLogTornLastLine(t *testing.T) {
	for _, tail := range []string{`3a1f`, `0badc0de {"Op":"service","Service":{"ID":"x"`, "0badc0de {\"Op\":\"-service\",\"ID\":\"web\"}\n"} {
		t.Run(tail[:4], func(t *testing.T) {
			dir := t.TempDir()
			withDir := func(c *Config) { c.DataDir = dir }
			c := newTestCatalog(t, withDir)
			if err := c.RegisterService(ServiceDefinition{Service: Service{Name: "web", Port: 80}}, false); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "catalog", logName)
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tail)
			f.Close()

			c2 := newTestCatalog(t, withDir)
			if got := localIDs(c2); !cmp.Equal(got, []string{"web"}) {
				t.Errorf("services after a torn write = %v, want [web]", got)
			}
			if err := c2.RegisterService(ServiceDefinition{Service: Service{Name: "db", Port: 5432}}, false); err != nil {
				t.Fatal(err)
			}
			if got := localIDs(newTestCatalog(t, withDir)); !cmp.Equal(got, []string{"db", "web"}) {
				t.Errorf("services after the next restart = %v, want [db web]", got)
			}
		})
	}
}

// TestLogDamagedLineStops: a bad line with good lines after it is
// damage, not a torn write: the agent refuses to start, naming the file
// and the line, rather than drop registrations silently.
func TestLogDamagedLineStops(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	for _, name := range []string{"web", "db"} {
		if err := c.RegisterService(ServiceDefinition{Service: Service{Name: name, Port: 80}}, false); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "catalog", logName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[len(lines)-3] = strings.Replace(lines[len(lines)-3], `"web"`, `"wob"`, 1) // the checksum no longer matches
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Address, cfg.DataDir = "self", "10.0.0.1", dir
	_, err = New(cfg)
	if err == nil || !strings.Contains(err.Error(), path+" line ") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("New on a damaged log = %v, want an error naming %s and the line", err, path)
	}
}

// TestLegacyFilesMigrate: a data dir of an earlier version (a file per
// service and check, one for the external nodes, one for the version)
// is read, written into the log, and its files removed; nothing is lost
// and versions keep growing.
func TestLegacyFilesMigrate(t *testing.T) {
	dir := t.TempDir()
	write := func(path string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "services", "a1.json"), serviceFile{Format: 1, Service: &Service{ID: "web", Name: "web", Port: 80, Weights: Weights{1, 1}}})
	write(filepath.Join(dir, "checks", "b2.json"), checkFile{Format: 1, Check: checks.Definition{ID: "service:web", Name: "web check", ServiceID: "web", TTL: time.Minute}})
	write(filepath.Join(dir, "catalog", "external.json"), externalFile{Format: 1, Nodes: []*externalNode{{
		Node:     &Node{Node: "google", Address: "8.8.8.8"},
		Services: map[string]*Service{"search": {ID: "search", Name: "search", Port: 443, Weights: Weights{1, 1}}},
	}}})
	future := uint64(time.Now().Add(time.Hour).UnixMilli()) << 20
	write(filepath.Join(dir, "catalog", "version"), future)

	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	check := func(c *Catalog) {
		t.Helper()
		if got := localIDs(c); !cmp.Equal(got, []string{"web"}) {
			t.Errorf("services = %v, want [web]", got)
		}
		if got := c.LocalCheckDefinitions(); len(got) != 1 || got[0].ID != "service:web" {
			t.Errorf("checks = %v, want service:web", got)
		}
		if got := instances(c, "search"); !cmp.Equal(got, []string{"google/search/passing"}) {
			t.Errorf("external registration = %v", got)
		}
		if v := c.Version(); v <= future {
			t.Errorf("version %d, want above the reserved %d", v, future)
		}
	}
	check(c)
	for _, old := range []string{"services/a1.json", "checks/b2.json", "catalog/external.json", "catalog/version"} {
		if _, err := os.Stat(filepath.Join(dir, old)); !os.IsNotExist(err) {
			t.Errorf("%s is still there after the migration (%v)", old, err)
		}
	}
	check(newTestCatalog(t, withDir))
}

// TestLogCompaction: a log much longer than the state it holds is
// rewritten, and what it holds stays.
func TestLogCompaction(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	for i := range compactMinLines * 2 {
		if err := c.RegisterService(ServiceDefinition{Service: Service{Name: "web", Port: 1 + i}}, false); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "catalog", logName))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > compactMinLines+2 {
		t.Errorf("the log has %d lines after %d changes of one service: not compacted", n, compactMinLines*2)
	}
	got := newTestCatalog(t, withDir).LocalService("web")
	if got == nil || got.Port != compactMinLines*2 {
		t.Errorf("service after compaction and restart = %+v, want port %d", got, compactMinLines*2)
	}
}

// TestCloseReleasesTheLog: Close closes the catalog's log (an agent
// stopped inside a longer-lived process must not hold its data dir), a
// registration after it opens the log again, and nothing written before
// or after is lost.
func TestCloseReleasesTheLog(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	for i, name := range []string{"web", "db"} {
		if err := c.RegisterService(ServiceDefinition{Service: Service{Name: name, Port: 80 + i}}, false); err != nil {
			t.Fatal(err)
		}
		if c.store.f == nil {
			t.Fatalf("the log is not open after registering %s", name)
		}
		for range 2 { // a second Close has nothing to do
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if c.store.f != nil {
			t.Errorf("the log is still open after Close")
		}
	}
	if got := localIDs(newTestCatalog(t, withDir)); !cmp.Equal(got, []string{"db", "web"}) {
		t.Errorf("services after a restart = %v, want [db web]", got)
	}
}
