package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// testPorts binds every listener to a free port; DNS is off except in
// the tests of it (dns_test.go), which set Ports.DNS to 0.
var testPorts = Ports{HTTP: 0, DNS: -1, SerfLAN: 0, Server: 0}

func devConfig() Config {
	c := DefaultConfig()
	c.Dev = true
	c.Ports = testPorts
	return c
}

func serverConfig(dataDir string) Config {
	c := DefaultConfig()
	c.Server = true
	c.BootstrapExpect = 1
	c.DataDir = dataDir
	c.BindAddr = "127.0.0.1"
	c.Ports = testPorts
	return c
}

// running is an agent started by start; stop ends it and returns Run's error.
type running struct {
	*Agent
	client *api.Client
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, set before done is closed
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30s of its context ending")
		return nil
	}
}

// start runs an agent until the test ends and waits for it to have a
// leader.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	r := startAgent(t, cfg)
	waitLeader(t, r.client)
	return r
}

// startAgent runs an agent until the test ends and waits until it serves.
func startAgent(t *testing.T, cfg Config) *running {
	t.Helper()
	return startAgentWith(t, cfg, nil)
}

// startAgentWith is startAgent with a change to the agent before it
// runs (tweak may be nil).
func startAgentWith(t *testing.T, cfg Config, tweak func(*Agent)) *running {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tweak != nil {
		tweak(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	select {
	case <-a.Started():
	case <-r.done:
		t.Fatalf("Run returned before starting: %v", r.err)
	}
	r.client, err = api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitLeader polls /v1/status/leader, as a client would, until it names one.
func waitLeader(t *testing.T, c *api.Client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = c.Status().Leader()
		if lastErr == nil && last != "" {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling the API: the leader is in Raft's goroutines
	}
	t.Fatalf("no leader after 15s: last answer %q, %v", last, lastErr)
}

func TestDevAgentServesAndCleansUp(t *testing.T) {
	r := start(t, devConfig())
	dataDir := r.DataDir()
	if !strings.HasPrefix(filepath.Base(dataDir), "cairn-dev-") {
		t.Errorf("-dev data dir = %q, want a temporary cairn-dev-* dir", dataDir)
	}
	if _, err := r.client.KV().Put(&api.KVPair{Key: "hello", Value: []byte("world")}, nil); err != nil {
		t.Fatalf("PUT: %v", err)
	}
	p, _, err := r.client.KV().Get("hello", nil)
	if err != nil || p == nil || string(p.Value) != "world" {
		t.Fatalf("GET hello = %+v, %v; want world", p, err)
	}
	self, err := r.client.Agent().Self()
	if err != nil {
		t.Fatalf("agent/self: %v", err)
	}
	if got := self["Config"]["NodeID"]; got != r.NodeID() {
		t.Errorf("agent/self Config.NodeID = %v, want %s", got, r.NodeID())
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-dev data dir %s still there after stop (stat: %v)", dataDir, err)
	}
}

func TestServerKeepsDataAndNodeIDAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	r := start(t, serverConfig(dir))
	id := r.NodeID()
	if _, err := r.client.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("first Run = %v", err)
	}

	r = start(t, serverConfig(dir))
	if r.NodeID() != id {
		t.Errorf("node ID after restart = %s, want %s", r.NodeID(), id)
	}
	p, _, err := r.client.KV().Get("k", nil)
	if err != nil || p == nil || string(p.Value) != "v" {
		t.Fatalf("GET k after restart = %+v, %v; want v", p, err)
	}
}

// TestStoppedAgentHoldsNoFileInItsDataDir: once Run has returned, the
// agent holds no file of its data dir open, so a process that embeds it
// (or starts it again) can remove or reuse the dir.
func TestStoppedAgentHoldsNoFileInItsDataDir(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd to list the process's open files")
	}
	dir := t.TempDir()
	r := start(t, serverConfig(dir))
	if _, err := r.client.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	if open := openUnder(t, dir); len(open) == 0 {
		t.Fatalf("no open file under the data dir while the agent runs: the check cannot see them")
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if open := openUnder(t, dir); len(open) > 0 {
		t.Errorf("files still open under the data dir after the agent stopped: %v", open)
	}
}

// openUnder lists the files under dir this process has open.
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if rel, ok := strings.CutPrefix(p, real+string(filepath.Separator)); err == nil && ok {
			open = append(open, rel)
		}
	}
	return open
}

func TestRunErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(serverConfig(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	want := "-data-dir=" + file + " is a file, not a directory; point -data-dir at a directory (it is created if missing)"
	if err == nil || err.Error() != want {
		t.Errorf("Run with a file as data dir = %v, want %q", err, want)
	}
	select {
	case <-a.Started():
		t.Error("Started closed although Run failed")
	default:
	}
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Errorf("second Run = %v, want a called-twice error", err)
	}
}

func TestHTTPPortInUseReleasesEverything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	cfg := serverConfig(dir)
	cfg.Ports.HTTP = port
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	want := "listen for the HTTP API on 127.0.0.1:" + strconv.Itoa(port)
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "move it with -http-port") {
		t.Fatalf("Run with a busy HTTP port = %v, want an error starting %q that says what to do", err, want)
	}
	// The store and the data dir lock were released: the same data dir
	// works at once.
	start(t, serverConfig(dir))
}

func TestShutdownWakesBlockingQueries(t *testing.T) {
	cfg := devConfig()
	cfg.ShutdownTimeout = time.Minute
	r := start(t, cfg)
	// The key exists, so only a write to it could end the query early: a
	// missing key's index is the whole KV table's, which the agent's own
	// start-up writes (its gossip key binding) move, as Consul's would.
	if _, err := r.client.KV().Put(&api.KVPair{Key: "watched", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := r.client.KV().Get("watched", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The query gets a connection of its own; once it is written, a
	// request on a later connection that gets answered means the server
	// has accepted the query's connection too (accept is in order), so
	// shutdown cannot drop it as idle: it has to wake the query.
	newClient := func() *api.Client {
		c, err := api.NewClient(&api.Config{Address: r.HTTPAddr().String(), Transport: &http.Transport{DisableKeepAlives: true}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sent := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
	q := (&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute}).
		WithContext(httptrace.WithClientTrace(context.Background(), trace))
	queryDone := make(chan error, 1)
	go func() {
		_, _, err := newClient().KV().Get("watched", q) // blocks until the key changes or the agent stops
		queryDone <- err
	}()
	<-sent
	if _, err := newClient().Status().Leader(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-queryDone:
		t.Fatalf("the blocking query returned before shutdown: %v", err)
	default:
	}

	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run = %v, want nil", r.err)
		}
	case <-time.After(cfg.ShutdownTimeout / 2):
		t.Fatalf("a blocking query held up shutdown for %v (ShutdownTimeout %v)", cfg.ShutdownTimeout/2, cfg.ShutdownTimeout)
	}
	<-queryDone
}

// TestHTTP2Cleartext: the API also speaks HTTP/2 without TLS, so one
// connection can carry many blocking queries.
func TestHTTP2Cleartext(t *testing.T) {
	r := start(t, devConfig())
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	resp, err := (&http.Client{Transport: tr}).Get("http://" + r.HTTPAddr().String() + "/v1/status/leader")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("GET over h2c = %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}
}
