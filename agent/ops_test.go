package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/logging"
)

// The expectations of consul/api's own tests (agent_test.go,
// snapshot_test.go), run with the official client against cairn.

// TestAPIAgentMetrics is consul/api's TestAPI_AgentMetrics: a gauge
// consul.<hostname>.runtime.alloc_bytes; and cairn's own series show up
// after the traffic that feeds them.
func TestAPIAgentMetrics(t *testing.T) {
	r := start(t, devConfig())
	if _, err := r.client.KV().Put(&api.KVPair{Key: "m", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.client.KV().Get("m", nil); err != nil {
		t.Fatal(err)
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.client.Agent().Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if m.Timestamp == "" {
		t.Error("Metrics().Timestamp is empty")
	}
	gauges := map[string]bool{}
	for _, g := range m.Gauges {
		gauges[g.Name] = true
	}
	for _, want := range []string{
		fmt.Sprintf("consul.%s.runtime.alloc_bytes", hostname),
		fmt.Sprintf("consul.%s.runtime.num_goroutines", hostname),
		fmt.Sprintf("consul.%s.raft.applied_index", hostname),
		fmt.Sprintf("consul.%s.catalog.nodes", hostname),
	} {
		if !gauges[want] {
			t.Errorf("Metrics().Gauges has no %s", want)
		}
	}
	samples := map[string]api.SampledValue{}
	for _, s := range m.Samples {
		key := s.Name
		if op := s.Labels["op"]; op != "" {
			key += "/" + op
		}
		if p := s.Labels["path"]; p != "" {
			key += "/" + s.Labels["method"] + " " + p + " " + s.Labels["code"]
		}
		samples[key] = s
	}
	for _, want := range []string{"consul.kvs.apply/set", "consul.kvs.read/get", "consul.raft.commitTime", "consul.api.http/PUT /v1/kv/ 200"} {
		s, ok := samples[want]
		if !ok || s.Count < 1 || s.Mean <= 0 {
			t.Errorf("Metrics().Samples[%s] = %+v, want a count of at least 1 and a mean > 0", want, s)
		}
	}
}

// TestMetricsBlockingQueries: a parked blocking query shows in
// consul.rpc.queries_blocking until it is answered.
func TestMetricsBlockingQueries(t *testing.T) {
	r := start(t, devConfig())
	if _, err := r.client.KV().Put(&api.KVPair{Key: "watched", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, qm, err := r.client.KV().Get("watched", nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, _, err := r.client.KV().Get("watched", &api.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: time.Minute})
		answered <- err
	}()
	hostname, _ := os.Hostname()
	parked := func() float32 {
		m, err := r.client.Agent().Metrics()
		if err != nil {
			return -1
		}
		for _, g := range m.Gauges {
			if g.Name == "consul."+hostname+".rpc.queries_blocking" {
				return g.Value
			}
		}
		return -1
	}
	eventually(t, "the parked query is counted", 10*time.Second, func() (bool, string) {
		v := parked()
		return v == 1, fmt.Sprint(v)
	})
	if _, err := r.client.KV().Put(&api.KVPair{Key: "watched", Value: []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the answered query is no longer counted", 10*time.Second, func() (bool, string) {
		v := parked()
		return v == 0, fmt.Sprint(v)
	})
}

// TestMetricsPrometheus is ?format=prometheus: the text format, Consul's
// names with underscores.
func TestMetricsPrometheus(t *testing.T) {
	r := start(t, devConfig())
	if _, err := r.client.KV().Put(&api.KVPair{Key: "m", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + r.HTTPAddr().String() + "/v1/agent/metrics?format=prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET ?format=prometheus = %d %s, want 200 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE consul_raft_commitTime histogram",
		`consul_kvs_apply_count{op="set"} 1`,
		"# TYPE consul_runtime_alloc_bytes gauge",
		`consul_serf_members{status="alive"} 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the Prometheus text has no %q", want)
		}
	}
	bad, err := http.Get("http://" + r.HTTPAddr().String() + "/v1/agent/metrics?format=xml")
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("?format=xml = %d, want 400", bad.StatusCode)
	}
}

func TestMetricsDisabled(t *testing.T) {
	cfg := devConfig()
	cfg.DisableMetrics = true
	r := start(t, cfg)
	_, err := r.client.Agent().Metrics()
	if err == nil || !strings.Contains(err.Error(), "501") || !strings.Contains(err.Error(), "-disable-metrics") {
		t.Errorf("Metrics() with -disable-metrics = %v, want a 501 that names -disable-metrics", err)
	}
}

// TestAPIAgentHost is consul/api's TestAPI_AgentHost.
func TestAPIAgentHost(t *testing.T) {
	r := start(t, devConfig())
	host, err := r.client.Agent().Host()
	if err != nil {
		t.Fatalf("Host: %v", err)
	}
	if host["CollectionTime"] == nil {
		t.Fatalf("Host() = %v, want CollectionTime", host)
	}
	if h, _ := host["Host"].(map[string]any); h["hostname"] == nil {
		t.Errorf("Host()[Host] = %v, want a hostname", host["Host"])
	}
}

// TestAPIAgentMonitor is consul/api's TestAPI_AgentMonitor and
// TestAPI_AgentMonitorJSON: a registration makes a log line, in hclog's
// text form ([INFO]/[DEBUG]) or as JSON.
func TestAPIAgentMonitor(t *testing.T) {
	r := start(t, devConfig())
	for _, tc := range []struct {
		name  string
		json  bool
		check func(line string) error
	}{
		{"text", false, func(line string) error {
			if !strings.Contains(line, "[INFO]") && !strings.Contains(line, "[DEBUG]") {
				return fmt.Errorf("no [INFO] or [DEBUG] in %q", line)
			}
			return nil
		}},
		{"json", true, func(line string) error {
			var out map[string]any
			if err := json.Unmarshal([]byte(line), &out); err != nil {
				return fmt.Errorf("not JSON: %q", line)
			}
			if out["@message"] == nil || out["@level"] == nil {
				return fmt.Errorf("no @message or @level in %q", line)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := make(chan struct{})
			defer close(stop)
			monitor := r.client.Agent().Monitor
			if tc.json {
				monitor = r.client.Agent().MonitorJSON
			}
			logCh, err := monitor("debug", stop, nil)
			if err != nil {
				t.Fatalf("Monitor: %v", err)
			}
			if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "redis"}); err != nil {
				t.Fatal(err)
			}
			select {
			case line := <-logCh:
				if err := tc.check(line); err != nil {
					t.Error(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no log line within 10s of a registration")
			}
		})
	}
	if _, err := r.client.Agent().Monitor("loud", nil, nil); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("Monitor(loud) = %v, want an error naming the level", err)
	}
}

// TestSnapshotRoundTripBetweenClusters saves a snapshot of one cluster
// with the official client and restores it into a fresh one: every key,
// session and VIP table entry comes back, and the fresh cluster's own
// later writes get higher indexes.
func TestSnapshotRoundTripBetweenClusters(t *testing.T) {
	src := start(t, devConfig())
	kvc := src.client.KV()
	for i := range 50 {
		if _, err := kvc.Put(&api.KVPair{Key: fmt.Sprintf("app/%02d", i), Value: []byte(fmt.Sprint(i)), Flags: uint64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A VIP table entry as the allocator writes it (agent/vip table keys).
	if _, err := kvc.Put(&api.KVPair{Key: "_cairn/vip/service/web", Value: []byte(`{"Addr":"10.200.0.5"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	sess, _, err := src.client.Session().Create(&api.SessionEntry{Name: "held", TTL: "60s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kvc.Acquire(&api.KVPair{Key: "lock/leader", Value: []byte("me"), Session: sess}, nil); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}

	snap, qm, err := src.client.Snapshot().Save(nil)
	if err != nil {
		t.Fatalf("Snapshot().Save: %v", err)
	}
	archive, err := io.ReadAll(snap)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	// consul/api's TestAPI_Snapshot checks the query meta.
	if qm.LastIndex == 0 || !qm.KnownLeader || qm.RequestTime == 0 {
		t.Errorf("Save's QueryMeta = %+v, want LastIndex, KnownLeader and RequestTime set", qm)
	}

	dst := start(t, devConfig())
	if _, err := dst.client.KV().Put(&api.KVPair{Key: "dst-only", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := dst.client.Snapshot().Restore(nil, bytes.NewReader(archive)); err != nil {
		t.Fatalf("Snapshot().Restore into a fresh cluster: %v", err)
	}

	pairs, _, err := dst.client.KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := kvc.List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != len(want) {
		t.Fatalf("restored cluster has %d keys, the source %d", len(pairs), len(want))
	}
	for i := range want {
		g, w := pairs[i], want[i]
		if g.Key != w.Key || string(g.Value) != string(w.Value) || g.Flags != w.Flags || g.Session != w.Session || g.ModifyIndex != w.ModifyIndex {
			t.Errorf("restored %s = %q flags %d session %q index %d, want %q %d %q %d", g.Key, g.Value, g.Flags, g.Session, g.ModifyIndex, w.Value, w.Flags, w.Session, w.ModifyIndex)
		}
	}
	se, _, err := dst.client.Session().Info(sess, nil)
	if err != nil || se == nil || se.Name != "held" || se.TTL != "60s" {
		t.Fatalf("restored session %s = %+v, %v; want the session named held, TTL 60s", sess, se, err)
	}
	// The session is live on the new leader: destroying it releases the
	// lock it holds (behavior delete removes the key).
	if _, err := dst.client.Session().Destroy(sess, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := dst.client.KV().Get("lock/leader", nil); p != nil {
		t.Errorf("lock/leader after destroying its restored session = %+v, want it deleted", p)
	}
	// New writes index above everything restored.
	if _, err := dst.client.KV().Put(&api.KVPair{Key: "after", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	after, _, err := dst.client.KV().Get("after", nil)
	if err != nil || after == nil || after.ModifyIndex <= want[len(want)-1].ModifyIndex {
		t.Errorf("a write after the restore has index %v, want above the restored ones", after)
	}
}

// TestSnapshotRestoreRefusesDamage: a damaged archive is refused with a
// reason and changes nothing.
func TestSnapshotRestoreRefusesDamage(t *testing.T) {
	r := start(t, devConfig())
	if _, err := r.client.KV().Put(&api.KVPair{Key: "keep", Value: []byte("me")}, nil); err != nil {
		t.Fatal(err)
	}
	snap, _, err := r.client.Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	archive, _ := io.ReadAll(snap)
	snap.Close()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty", "", "not gzip"},
		{"truncated", string(archive[:len(archive)/2]), "damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.client.Snapshot().Restore(nil, strings.NewReader(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("Restore(%s) = %v, want an error with %q and \"nothing was changed\"", tc.name, err, tc.want)
			}
			if p, _, _ := r.client.KV().Get("keep", nil); p == nil || string(p.Value) != "me" {
				t.Errorf("keep after a refused restore = %+v", p)
			}
		})
	}
}

// TestAPIAgentReload is consul/api's TestAPI_AgentReload (and its
// _MultiPort twin's shape): a service written into the config file after
// the start is registered by Reload; one dropped from the file goes,
// and one registered through the API stays.
func TestAPIAgentReload(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "reload.json")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := devConfig()
	base.ReloadConfig = func() (Config, error) {
		c := devConfig()
		err := LoadConfigFile(&c, cfgFile)
		return c, err
	}
	r := start(t, base)
	agent := r.client.Agent()
	if err := agent.ServiceRegister(&api.AgentServiceRegistration{Name: "by-api"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(`{"service":{"name":"redis", "port":1234, "Meta": {"some": "meta"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	services, err := agent.Services()
	if err != nil {
		t.Fatal(err)
	}
	service, ok := services["redis"]
	if !ok || service.Port != 1234 || service.Meta["some"] != "meta" {
		t.Fatalf("services after reload: redis = %+v; want redis on 1234 with Meta some=meta", service)
	}

	// The file now defines another service: redis goes, by-api stays.
	if err := os.WriteFile(cfgFile, []byte(`{"services":[{"name":"memcached", "port":11211}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	services, err = agent.Services()
	if err != nil {
		t.Fatal(err)
	}
	_, hasRedis := services["redis"]
	_, hasMemcached := services["memcached"]
	_, hasAPI := services["by-api"]
	if hasRedis || !hasMemcached || !hasAPI {
		t.Errorf("services after the second reload = %v; want memcached and by-api, not redis", services)
	}

	// A definition that does not parse is refused; nothing changes.
	if err := os.WriteFile(cfgFile, []byte(`{"services":[{"name":"memcached", "port":"eleven"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.Reload(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Reload with a bad service definition = %v, want a refusal", err)
	}
	if services, _ := agent.Services(); services["memcached"] == nil {
		t.Errorf("memcached is gone after a refused reload: %v", services)
	}
}

// TestEnableDebugReloads: enable_debug turns the CPU profile and the
// trace on and off on reload, as Consul's does.
func TestEnableDebugReloads(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "agent.hcl")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(``)
	dataDir := t.TempDir()
	base := serverConfig(dataDir)
	base.ReloadConfig = func() (Config, error) {
		c := serverConfig(dataDir)
		err := LoadConfigFile(&c, cfgFile)
		return c, err
	}
	r := start(t, base)
	trace := func() int {
		t.Helper()
		resp, err := http.Get("http://" + r.HTTPAddr().String() + "/debug/pprof/trace?seconds=0.01")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, step := range []struct {
		file string
		want int
	}{
		{``, http.StatusNotFound},
		{`enable_debug = true`, http.StatusOK},
		{`enable_debug = false`, http.StatusNotFound},
	} {
		write(step.file)
		if err := r.client.Agent().Reload(); err != nil {
			t.Fatalf("Reload with %q: %v", step.file, err)
		}
		if got := trace(); got != step.want {
			t.Errorf("with %q, GET /debug/pprof/trace = %d, want %d", step.file, got, step.want)
		}
	}
}

// TestReload: a new log level and templates take effect without a
// restart; an invalid new configuration is refused and the old one keeps
// running.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agent.hcl")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmplSrc := filepath.Join(dir, "in.tmpl")
	out := filepath.Join(dir, "out.txt")
	if err := os.WriteFile(tmplSrc, []byte(`v={{ key "greeting" }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	write(`log_level = "info"`)
	base := devConfig()
	base.ReloadConfig = func() (Config, error) {
		c := devConfig()
		if err := LoadConfigFile(&c, cfgFile); err != nil {
			return Config{}, err
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "templates")); len(b) > 0 {
			c.Templates = strings.Fields(string(b))
		}
		return c, nil
	}
	r := start(t, base)
	if _, err := r.client.KV().Put(&api.KVPair{Key: "greeting", Value: []byte("hello")}, nil); err != nil {
		t.Fatal(err)
	}

	// A bad file is refused; the agent keeps serving as before.
	write(`log_level = "loud"`)
	err := r.client.Agent().Reload()
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "loud") {
		t.Fatalf("Reload with log_level=loud = %v, want a refusal naming the value", err)
	}
	write(`no_such_key = 1`)
	if err := r.client.Agent().Reload(); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Fatalf("Reload with an unknown key = %v, want a refusal naming it", err)
	}

	// Debug lines reach a stream only once the level allows them... the
	// stream has its own level, so the main level is checked directly.
	write(`log_level = "debug"`)
	if err := os.WriteFile(filepath.Join(dir, "templates"), []byte(tmplSrc+":"+out), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.client.Agent().Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if lvl := logging.Of(r.Agent.log).Level(); lvl.String() != "DEBUG" {
		t.Errorf("log level after reload = %v, want DEBUG", lvl)
	}
	eventually(t, "the template added by the reload renders", 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(out)
		return string(b) == "v=hello", fmt.Sprintf("%q %v", b, err)
	})

	// A template that does not parse is refused; the running one stays.
	bad := filepath.Join(dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte(`{{ key `), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates"), []byte(bad+":"+filepath.Join(dir, "bad.out")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.client.Agent().Reload(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Reload with a broken template = %v, want a refusal", err)
	}
	if _, err := r.client.KV().Put(&api.KVPair{Key: "greeting", Value: []byte("again")}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old template keeps rendering after a refused reload", 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(out)
		return string(b) == "v=again", fmt.Sprintf("%q %v", b, err)
	})
}

// TestAutopilotHealthAndRaftOps: a dev server is healthy with no
// failure tolerance; removing an unknown peer says so.
func TestAutopilotHealthAndRaftOps(t *testing.T) {
	r := start(t, devConfig())
	h, err := r.client.Operator().AutopilotServerHealth(nil)
	if err != nil {
		t.Fatalf("AutopilotServerHealth: %v", err)
	}
	if !h.Healthy || h.FailureTolerance != 0 || len(h.Servers) != 1 || !h.Servers[0].Leader || !h.Servers[0].Healthy || h.Servers[0].LastIndex == 0 {
		t.Errorf("health = %+v, want one healthy leader with a last index and tolerance 0", h)
	}
	if err := r.client.Operator().RaftRemovePeerByID("nope", nil); err == nil || !strings.Contains(err.Error(), `no server with ID "nope"`) {
		t.Errorf("RaftRemovePeerByID(nope) = %v, want an error naming it", err)
	}
	if _, err := r.client.Operator().RaftLeaderTransfer("", nil); err == nil {
		t.Error("RaftLeaderTransfer on a single server succeeded; there is nobody to hand over to")
	}
}

// TestRaftTransferAndRemoveInCluster: leadership moves to the server
// named, and a removed server leaves the Raft configuration.
func TestRaftTransferAndRemoveInCluster(t *testing.T) {
	c := startCluster(t, 3, 0)
	leaderAddr, err := c.servers[0].client.Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	var leader *running
	for _, s := range c.servers {
		if s.ServerAddr() == leaderAddr {
			leader = s
		}
	}
	if leader == nil {
		t.Fatal("no leader among the servers")
	}
	var target *running
	for _, s := range c.servers {
		if s != leader {
			target = s
			break
		}
	}
	resp, err := leader.client.Operator().RaftLeaderTransfer(target.NodeID(), nil)
	if err != nil || !resp.Success {
		t.Fatalf("RaftLeaderTransfer(%s) = %+v, %v", target.NodeID(), resp, err)
	}
	eventually(t, "the named server leads", 10*time.Second, func() (bool, string) {
		l, err := target.client.Status().Leader()
		return l == target.ServerAddr(), fmt.Sprintf("leader %q, %v", l, err)
	})
	eventually(t, "3 servers are healthy with a failure tolerance of 1", 10*time.Second, func() (bool, string) {
		h, err := target.client.Operator().AutopilotServerHealth(nil)
		return err == nil && h.Healthy && h.FailureTolerance == 1 && len(h.Servers) == 3, fmt.Sprintf("%+v, %v", h, err)
	})
	// Remove the old leader by address.
	if err := target.client.Operator().RaftRemovePeerByAddress(leader.ServerAddr(), nil); err != nil {
		t.Fatalf("RaftRemovePeerByAddress: %v", err)
	}
	cfg, err := target.client.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Servers {
		if s.Address == leader.ServerAddr() {
			t.Errorf("configuration after removal still has %s", s.Address)
		}
	}
}
