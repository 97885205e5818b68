package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/agent/vip"
)

// promText is the agent's /v1/agent/metrics?format=prometheus.
func promText(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/v1/agent/metrics?format=prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET metrics ?format=prometheus = %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// promValue is the value of one series in Prometheus text, e.g.
// `consul_dns_query_count{rcode="NXDOMAIN"}`; labels in the order the
// registry writes them (sorted by name).
func promValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// jsonMetric finds a series in Consul's JSON (/v1/agent/metrics through
// the official client) by name and labels: a counter or sample's Count,
// or a gauge's value.
func jsonMetric(t *testing.T, c *api.Client, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	m, err := c.Agent().Metrics()
	if err != nil {
		t.Fatal(err)
	}
	match := func(n string, l map[string]string) bool {
		if n != name {
			return false
		}
		for k, v := range labels {
			if l[k] != v {
				return false
			}
		}
		return true
	}
	for _, s := range append(m.Counters, m.Samples...) {
		if match(s.Name, s.Labels) {
			return float64(s.Count), true
		}
	}
	host, _ := os.Hostname()
	for _, g := range m.Gauges {
		if match(strings.Replace(g.Name, "consul."+host+".", "consul.", 1), g.Labels) {
			return float64(g.Value), true
		}
	}
	return 0, false
}

// wantMetric waits until the series reaches at least min in both
// formats: Prometheus text (series) and Consul's JSON (name, labels).
func wantMetric(t *testing.T, r *running, series, name string, labels map[string]string, min float64) {
	t.Helper()
	eventually(t, series+" >= "+fmt.Sprint(min), 15*time.Second, func() (bool, string) {
		pv, pok := promValue(promText(t, r.HTTPAddr().String()), series)
		jv, jok := jsonMetric(t, r.client, name, labels)
		return pok && jok && pv >= min && jv >= min, fmt.Sprintf("prometheus %v (%v), JSON %v (%v)", pv, pok, jv, jok)
	})
}

// flakyDataplane is memDataplane whose first Sync and first Update fail,
// as a kernel refusing a rule would.
type flakyDataplane struct {
	memDataplane
	failedSync, failedUpdate atomic.Bool
}

func (d *flakyDataplane) Sync(ctx context.Context, desired []vip.Service) error {
	if d.failedSync.CompareAndSwap(false, true) {
		return errors.New("injected: sync refused")
	}
	return d.memDataplane.Sync(ctx, desired)
}

func (d *flakyDataplane) Update(ctx context.Context, set []vip.Service, del []netip.Addr) error {
	if d.failedUpdate.CompareAndSwap(false, true) {
		return errors.New("injected: update refused")
	}
	return d.memDataplane.Update(ctx, set, del)
}

// TestMetricsFromEvents makes each event the issue lists happen on one
// agent and reads its metric back from /v1/agent/metrics, in Consul's
// JSON and in Prometheus text: DNS answers by rcode, check results,
// template renders, render errors and check failures, registrator calls,
// VIP reconciles and their errors, Raft applies, member states.
func TestMetricsFromEvents(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "page.tmpl")
	if err := os.WriteFile(src, []byte(`{{ key "page/body" }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "page.out")
	cfg := devConfig()
	cfg.NodeName = "node-d"
	cfg.Ports.DNS = 0
	cfg.VIPCIDR = "10.200.0.0/24"
	cfg.Docker = true
	cfg.DockerHost = fakeEngineAPI(t)
	// The second template's destination is under a file: its write fails.
	cfg.Templates = []string{src + ":" + dest, src + ":" + filepath.Join(src, "cannot-write")}
	cfg.TemplateCheck = "! grep -q refuse " + dest
	dp := &flakyDataplane{}
	r := startAgentWith(t, cfg, func(a *Agent) {
		a.dataplanes = map[string]DataplaneFactory{DataplaneNFTables: func(DataplaneOptions) (vip.Dataplane, error) { return dp, nil }}
	})
	waitLeader(t, r.client)

	// Checks: an HTTP check that passes, one that fails.
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(ok.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(bad.Close)
	for i, u := range []string{ok.URL, bad.URL} {
		err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: fmt.Sprintf("web-%d", i), Name: "web", Address: "127.0.0.1", Port: 8080 + i, Meta: map[string]string{"vip_port": "80"},
			Check: &api.AgentServiceCheck{HTTP: u, Interval: "200ms"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	wantMetric(t, r, `consul_checks_updates{status="passing"}`, "consul.checks.updates", map[string]string{"status": "passing"}, 1)
	wantMetric(t, r, `consul_checks_updates{status="critical"}`, "consul.checks.updates", map[string]string{"status": "critical"}, 1)

	// DNS: an answer and a name that does not exist.
	for q, rcode := range map[string]int{"web.service.consul": mdns.RcodeSuccess, "nope.service.consul": mdns.RcodeNameError} {
		eventually(t, "DNS "+q, 10*time.Second, func() (bool, string) {
			m, err := dnsQuery(r.DNSAddr().String(), q, mdns.TypeA)
			if err != nil {
				return false, err.Error()
			}
			return m.Rcode == rcode, mdns.RcodeToString[m.Rcode]
		})
	}
	wantMetric(t, r, `consul_dns_query_count{rcode="NOERROR"}`, "consul.dns.query", map[string]string{"rcode": "NOERROR"}, 1)
	wantMetric(t, r, `consul_dns_query_count{rcode="NXDOMAIN"}`, "consul.dns.query", map[string]string{"rcode": "NXDOMAIN"}, 1)

	// Templates: a render, a write that fails, a result the check refuses.
	if _, err := r.client.KV().Put(&api.KVPair{Key: "page/body", Value: []byte("hello")}, nil); err != nil {
		t.Fatal(err)
	}
	wantMetric(t, r, `cairn_template_events{kind="render"}`, "cairn.template.events", map[string]string{"kind": "render"}, 1)
	wantMetric(t, r, `cairn_template_events{kind="render_error"}`, "cairn.template.events", map[string]string{"kind": "render_error"}, 1)
	if _, err := r.client.KV().Put(&api.KVPair{Key: "page/body", Value: []byte("refuse this")}, nil); err != nil {
		t.Fatal(err)
	}
	wantMetric(t, r, `cairn_template_events{kind="check_failure"}`, "cairn.template.events", map[string]string{"kind": "check_failure"}, 1)
	if b, _ := os.ReadFile(dest); string(b) != "hello" {
		t.Errorf("%s after the refused render = %q, want the previous hello", dest, b)
	}

	// Registrator: the fake engine's container is registered.
	wantMetric(t, r, `cairn_registrator_events{op="register",result="ok"}`, "cairn.registrator.events", map[string]string{"op": "register", "result": "ok"}, 1)
	wantMetric(t, r, `cairn_registrator_apply_count{op="register"}`, "cairn.registrator.apply", map[string]string{"op": "register"}, 1)
	wantMetric(t, r, `cairn_registrator_lag_count{op="register"}`, "cairn.registrator.lag", map[string]string{"op": "register"}, 1)

	// VIPs: reconciles, and the ones the data plane refused.
	wantMetric(t, r, `cairn_vip_reconcile_count{op="sync"}`, "cairn.vip.reconcile", map[string]string{"op": "sync"}, 1)
	eventually(t, "a VIP reconcile error is counted", 15*time.Second, func() (bool, string) {
		text := promText(t, r.HTTPAddr().String())
		s, _ := promValue(text, `cairn_vip_reconcile_errors{op="sync"}`)
		u, _ := promValue(text, `cairn_vip_reconcile_errors{op="update"}`)
		return s+u >= 1, fmt.Sprintf("sync %v, update %v", s, u)
	})

	// Raft: applies this leader committed, their commit time; a leader
	// has no last contact to report.
	wantMetric(t, r, "consul_raft_apply", "consul.raft.apply", nil, 2)
	wantMetric(t, r, "consul_raft_commitTime_count", "consul.raft.commitTime", nil, 2)
	if v, ok := promValue(promText(t, r.HTTPAddr().String()), "consul_raft_last_contact"); !ok || v != 0 {
		t.Errorf("consul_raft_last_contact on the leader = %v (%v), want 0", v, ok)
	}
	// Members: this one, alive.
	wantMetric(t, r, `consul_serf_members{status="alive"}`, "consul.serf.members", map[string]string{"status": "alive"}, 1)
}

// TestMetricsClusterConvergenceAndRaft: on a server with two clients,
// each client's catalog state arrives (cairn.catalog.convergence counts
// it, nothing stays missing), a client that leaves shows as left; a
// follower reports its last contact with the leader, and a leadership
// change is counted.
func TestMetricsClusterConvergenceAndRaft(t *testing.T) {
	c := startCluster(t, 2, 2)
	// followerOf is the server that does not lead now.
	followerOf := func() (leader, follower *running) {
		leader = leaderOf(t, c)
		for _, s := range c.servers {
			if s != leader {
				follower = s
			}
		}
		return leader, follower
	}
	leader, follower := followerOf()
	for i, cl := range c.clients {
		if err := cl.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("svc-%d", i), Name: "svc", Port: 9000 + i}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.servers {
		wantMetric(t, s, "cairn_catalog_convergence_count", "cairn.catalog.convergence", nil, 3) // the other server and two clients
		eventually(t, "nothing missing on "+s.Config().NodeName, 15*time.Second, func() (bool, string) {
			v, ok := promValue(promText(t, s.HTTPAddr().String()), "cairn_catalog_replicas_missing")
			return ok && v == 0, fmt.Sprint(v, ok)
		})
	}
	eventually(t, "the follower heard from the leader", 10*time.Second, func() (bool, string) {
		v, ok := promValue(promText(t, follower.HTTPAddr().String()), "consul_raft_last_contact")
		return ok && v >= 0 && v < 5000, fmt.Sprint(v, ok)
	})
	wantMetric(t, leader, `consul_raft_state{state="leader"}`, "consul.raft.state", map[string]string{"state": "leader"}, 1)

	leader, follower = followerOf()
	resp, err := leader.client.Operator().RaftLeaderTransfer(follower.NodeID(), nil)
	if err != nil || !resp.Success {
		t.Fatalf("RaftLeaderTransfer = %+v, %v", resp, err)
	}
	wantMetric(t, follower, `consul_raft_state{state="leader"}`, "consul.raft.state", map[string]string{"state": "leader"}, 1)
	wantMetric(t, follower, "consul_raft_leader_changes", "consul.raft.leader.changes", nil, 1)

	if err := c.clients[1].client.Agent().Leave(); err != nil {
		t.Fatal(err)
	}
	wantMetric(t, follower, `consul_serf_members{status="left"}`, "consul.serf.members", map[string]string{"status": "left"}, 1)
	wantMetric(t, follower, `consul_serf_members{status="alive"}`, "consul.serf.members", map[string]string{"status": "alive"}, 3)
}
