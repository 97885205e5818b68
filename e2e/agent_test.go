//go:build unix

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// TestGracefulRestartKeepsEveryKey writes 500 keys, stops the agent with
// SIGTERM and starts it again on the same data dir.
func TestGracefulRestartKeepsEveryKey(t *testing.T) {
	t.Parallel()
	const n = 500
	dir := filepath.Join(t.TempDir(), "data")
	p := freePorts(t)

	first := start(t, "first run", serverArgs(dir, p)...)
	want := writeKeys(t, first.waitLeader(p.httpAddr()), "durable/", n)

	first.signal(syscall.SIGTERM)
	if code := first.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}

	second := start(t, "second run", serverArgs(dir, p)...)
	got := readKeys(t, second.waitLeader(p.httpAddr()), "durable/", nil)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys after restart (-want +got):\n%s", diff)
	}
}

// TestDefaultReadsRightAfterRestart reads in the default consistency mode
// as soon as /v1/status/leader names a leader after a restart.
func TestDefaultReadsRightAfterRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := freePorts(t)
	first := start(t, "first run", serverArgs(dir, p)...)
	want := writeKeys(t, first.waitLeader(p.httpAddr()), "k/", 500)
	first.signal(syscall.SIGTERM)
	first.wait(30 * time.Second)

	second := start(t, "second run", serverArgs(dir, p)...)
	c := client(t, p.httpAddr())
	deadline := time.Now().Add(20 * time.Second)
	for leader, _ := c.Status().Leader(); leader == ""; leader, _ = c.Status().Leader() {
		if second.exited() || time.Now().After(deadline) {
			t.Fatal("no leader after restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, readKeys(t, c, "k/", nil)); diff != "" {
		t.Errorf("default-mode read right after the restart (-want +got):\n%s", diff)
	}
}

// writeKeys writes n keys under prefix, 8 at a time, and returns them.
func writeKeys(t *testing.T, c *api.Client, prefix string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		want[fmt.Sprintf("%s%03d", prefix, i)] = fmt.Sprintf("value-%d", i)
	}
	var g errgroup.Group
	g.SetLimit(8)
	for k, v := range want {
		g.Go(func() error {
			if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
				return fmt.Errorf("PUT %s: %w", k, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return want
}

// readKeys lists prefix as a map of key to value.
func readKeys(t *testing.T, c *api.Client, prefix string, q *api.QueryOptions) map[string]string {
	t.Helper()
	pairs, _, err := c.KV().List(prefix, q)
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	got := map[string]string{}
	for _, kv := range pairs {
		got[kv.Key] = string(kv.Value)
	}
	return got
}

// TestKill9KeepsAcknowledgedWrites kills the agent while writers run and
// checks that every write it acknowledged survived.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	const writers, killAfter = 4, 200
	dir := filepath.Join(t.TempDir(), "data")
	p := freePorts(t)

	first := start(t, "killed run", serverArgs(dir, p)...)
	c := first.waitLeader(p.httpAddr())

	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		count   atomic.Int64
		enough  = make(chan struct{})
		once    sync.Once
		writing sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for w := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("acked/w%d/%06d", w, i), fmt.Sprintf("w%d-%d", w, i)
				// cas=0 creates the key: the agent answers true once
				// the write is committed.
				ok, _, err := c.KV().CAS(&api.KVPair{Key: k, Value: []byte(v)}, (&api.WriteOptions{}).WithContext(ctx))
				if err != nil || !ok {
					continue
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
				if count.Add(1) >= killAfter {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d writes acknowledged in 30s", count.Load())
	}
	first.signal(syscall.SIGKILL)
	first.wait(10 * time.Second)
	stop()
	writing.Wait()
	t.Logf("%d writes acknowledged before kill -9", len(acked))

	second := start(t, "after kill -9", serverArgs(dir, p)...)
	got := readKeys(t, second.waitLeader(p.httpAddr()), "acked/", nil)
	var lost []string
	for k, v := range acked {
		if got[k] != v {
			lost = append(lost, fmt.Sprintf("%s=%q (found %q)", k, v, got[k]))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes lost after kill -9: %s", len(lost), len(acked), strings.Join(lost[:min(len(lost), 10)], ", "))
	}
}

// TestTwoDevAgentsSideBySide runs two -dev agents on one machine: with
// their ports moved apart they are two separate working clusters.
func TestTwoDevAgentsSideBySide(t *testing.T) {
	t.Parallel()
	type dev struct {
		ports  ports
		client *api.Client
	}
	var devs []dev
	for _, name := range []string{"a", "b"} {
		p := freePorts(t)
		proc := start(t, "dev "+name, append([]string{"agent", "-dev", "-node", "dev-" + name}, p.flags()...)...)
		devs = append(devs, dev{p, proc.waitLeader(p.httpAddr())})
	}
	for i, d := range devs {
		if _, err := d.client.KV().Put(&api.KVPair{Key: "who", Value: fmt.Appendf(nil, "agent-%d", i)}, nil); err != nil {
			t.Fatalf("agent %d: PUT: %v", i, err)
		}
	}
	for i, d := range devs {
		kv, _, err := d.client.KV().Get("who", nil)
		if err != nil || kv == nil || string(kv.Value) != fmt.Sprintf("agent-%d", i) {
			t.Errorf("agent %d: GET who = %+v, %v; want its own agent-%d", i, kv, err, i)
		}
		name, err := d.client.Agent().NodeName()
		if want := fmt.Sprintf("dev-%c", 'a'+i); err != nil || name != want {
			t.Errorf("agent %d: node name = %q, %v; want %q", i, name, err, want)
		}
	}
}

// TestBadDataDirFailsFast: an agent that cannot use its data dir exits
// at once, non-zero, with one clear line, not a panic.
func TestBadDataDirFailsFast(t *testing.T) {
	t.Parallel()
	corrupt := filepath.Join(t.TempDir(), "corrupt")
	raftDB := filepath.Join(corrupt, "raft", "raft.db")
	if err := os.MkdirAll(filepath.Dir(raftDB), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raftDB, []byte(strings.Repeat("this is not a bolt database\n", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, dataDir string
		wantInStderr  []string
	}{
		{"corrupt raft.db", corrupt, []string{raftDB, "restore the data dir from a backup or move it away"}},
		{"data dir is a file", file, []string{"-data-dir=" + file + " is a file, not a directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proc := start(t, tt.name, serverArgs(tt.dataDir, freePorts(t))...)
			code := proc.wait(15 * time.Second)
			stderr := proc.errOut.String()
			if code == 0 {
				t.Errorf("exit code = 0, want non-zero")
			}
			for _, want := range tt.wantInStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not name %q:\n%s", want, stderr)
				}
			}
			for _, bad := range []string{"panic:", "goroutine "} {
				if strings.Contains(stderr, bad) {
					t.Errorf("stderr has a crash trace (%q):\n%s", bad, stderr)
				}
			}
		})
	}
}

// TestSIGINTStopsGracefully: Ctrl-C stops the agent cleanly, exit code 0.
func TestSIGINTStopsGracefully(t *testing.T) {
	t.Parallel()
	p := freePorts(t)
	proc := start(t, "dev", append([]string{"agent", "-dev"}, p.flags()...)...)
	c := proc.waitLeader(p.httpAddr())
	if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	proc.signal(syscall.SIGINT)
	if code := proc.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGINT = %d, want 0", code)
	}
	out := proc.errOut.String()
	for _, want := range []string{`msg="agent stopping" reason="interrupt signal received"`, `msg="agent stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("graceful stop logged an error:\n%s", out)
	}
}

// TestConfigFiles starts agents from HCL and JSON config files, as
// Consul's are written, and checks that flags override them.
func TestConfigFiles(t *testing.T) {
	t.Parallel()
	hcl := func(dataDir string, p ports) string {
		return fmt.Sprintf(`
node_name        = "hcl-node"
data_dir         = %q
server           = true
bootstrap_expect = 1
bind_addr        = "127.0.0.1"
client_addr      = "127.0.0.1"
log_level        = "debug"
ports {
  http     = %d
  dns      = %d
  serf_lan = %d
  server   = %d
}
`, dataDir, p.http, p.dns, p.serf, p.server)
	}
	json := func(dataDir string, p ports) string {
		return fmt.Sprintf(`{
  "node_name": "json-node",
  "data_dir": %q,
  "server": true,
  "bootstrap_expect": 1,
  "bind_addr": "127.0.0.1",
  "client_addr": "127.0.0.1",
  "ports": {"http": %d, "dns": %d, "serf_lan": %d, "server": %d}
}`, dataDir, p.http, p.dns, p.serf, p.server)
	}
	tests := []struct {
		name      string
		file      string
		body      func(string, ports) string
		extra     []string
		wantNode  string
		wantDebug bool
	}{
		{name: "hcl", file: "agent.hcl", body: hcl, wantNode: "hcl-node", wantDebug: true},
		{name: "json", file: "agent.json", body: json, wantNode: "json-node"},
		{name: "flags override the file", file: "agent.json", body: json, extra: []string{"-node", "flag-node", "-log-level", "debug"},
			wantNode: "flag-node", wantDebug: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := freePorts(t)
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.body(filepath.Join(dir, "data"), p)), 0o600); err != nil {
				t.Fatal(err)
			}
			proc := start(t, tt.name, append([]string{"agent", "-config-file", path}, tt.extra...)...)
			c := proc.waitLeader(p.httpAddr())
			name, err := c.Agent().NodeName()
			if err != nil || name != tt.wantNode {
				t.Errorf("node name = %q, %v; want %q", name, err, tt.wantNode)
			}
			if got := strings.Contains(proc.errOut.String(), "level=DEBUG"); got != tt.wantDebug {
				t.Errorf("debug lines logged = %v, want %v", got, tt.wantDebug)
			}
		})
	}

	t.Run("unknown key", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "agent.hcl")
		if err := os.WriteFile(path, []byte("server = true\nui_confg {\n  enabled = true\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := cairn(t, nil, "", "agent", "-config-file", path)
		want := `cairn agent: config file ` + path + `: line 2: unknown key "ui_confg"; it is neither one of cairn's keys (`
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, want) {
			t.Errorf("cairn agent -config-file (unknown key) = exit %d, stdout %q, stderr %q; want exit 1, stderr starting %q", code, stdout, stderr, want)
		}
	})
}

// TestKVCommandRoundTrip drives `cairn kv` against a running agent:
// put, get, export, delete, import, and consul's error output.
func TestKVCommandRoundTrip(t *testing.T) {
	t.Parallel()
	p := freePorts(t)
	proc := start(t, "dev", append([]string{"agent", "-dev"}, p.flags()...)...)
	proc.waitLeader(p.httpAddr())
	env := []string{"CONSUL_HTTP_ADDR=" + p.httpAddr()}
	dir := t.TempDir()

	run := func(stdin string, args ...string) string {
		t.Helper()
		code, stdout, stderr := cairn(t, env, stdin, append([]string{"kv"}, args...)...)
		if code != 0 || stderr != "" {
			t.Fatalf("cairn kv %s = exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	run("", "put", "web/upstreams/a", "10.0.0.1:80")
	run("", "put", "-flags=7", "web/upstreams/b", "10.0.0.2:80")
	run("server {\n  listen 80;\n}\n", "put", "web/nginx.conf", "-")
	if got := run("", "get", "web/upstreams/b"); got != "10.0.0.2:80\n" {
		t.Errorf("kv get = %q, want %q", got, "10.0.0.2:80\n")
	}

	export := run("", "export", "web/")
	exportFile := filepath.Join(dir, "web.json")
	if err := os.WriteFile(exportFile, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run("", "delete", "-recurse", "web/"); got != "Success! Deleted keys with prefix: web/\n" {
		t.Errorf("kv delete -recurse = %q", got)
	}
	if got := run("", "get", "-recurse", "web/"); got != "" {
		t.Errorf("kv get -recurse after delete = %q, want nothing", got)
	}
	want := "Imported: web/nginx.conf\nImported: web/upstreams/a\nImported: web/upstreams/b\n"
	if got := run("", "import", "@"+exportFile); got != want {
		t.Errorf("kv import = %q, want %q", got, want)
	}
	if again := run("", "export", "web/"); again != export {
		t.Errorf("export after import differs:\n%s\nwant\n%s", again, export)
	}
	if got := run("", "get", "web/nginx.conf"); got != "server {\n  listen 80;\n}\n\n" {
		t.Errorf("kv get of a value from stdin = %q", got)
	}

	run("", "delete", "web/upstreams/a")
	code, stdout, stderr := cairn(t, env, "", "kv", "get", "web/upstreams/a")
	if code != 1 || stdout != "" || stderr != "Error! No key exists at: web/upstreams/a\n" {
		t.Errorf("kv get of a deleted key = exit %d, stdout %q, stderr %q; want exit 1 and consul's error", code, stdout, stderr)
	}
}
