package metrics

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

// TestJSONShape: the JSON view decodes into the official client's
// api.MetricsInfo, with Consul's names: gauges carry the host name,
// counters and timers do not; labels come through.
func TestJSONShape(t *testing.T) {
	r := New("host1")
	r.Counter("consul.kvs.errors", "errors", "op").WithLabelValues("get").Add(3)
	r.Gauge("consul.catalog.nodes", "nodes").WithLabelValues().Set(7)
	tm := r.Timer("consul.raft.commitTime", "commits")
	for _, d := range []time.Duration{2 * time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond} {
		tm.With().Observe(d)
	}
	r.GaugeVecFunc("consul.serf.members", "members", "status", func() map[string]float64 { return map[string]float64{"alive": 2} })

	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info api.MetricsInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatalf("decode into api.MetricsInfo: %v", err)
	}
	gauges := map[string]api.GaugeValue{}
	for _, g := range info.Gauges {
		gauges[g.Name] = g
	}
	if g := gauges["consul.host1.catalog.nodes"]; g.Value != 7 {
		t.Errorf("gauge consul.host1.catalog.nodes = %+v, want 7", g)
	}
	if g := gauges["consul.host1.serf.members"]; g.Value != 2 || g.Labels["status"] != "alive" {
		t.Errorf("gauge consul.host1.serf.members = %+v, want 2 with status=alive", g)
	}
	if _, ok := gauges["consul.host1.runtime.alloc_bytes"]; !ok {
		t.Error("no runtime gauge consul.host1.runtime.alloc_bytes")
	}
	var counter *api.SampledValue
	for i, c := range info.Counters {
		if c.Name == "consul.kvs.errors" {
			counter = &info.Counters[i]
		}
	}
	want := &api.SampledValue{Name: "consul.kvs.errors", Count: 3, Sum: 3, Min: 1, Max: 1, Mean: 1, Labels: map[string]string{"op": "get"}}
	if diff := cmp.Diff(want, counter); diff != "" {
		t.Errorf("counter (-want +got):\n%s", diff)
	}
	var sample *api.SampledValue
	for i, s := range info.Samples {
		if s.Name == "consul.raft.commitTime" {
			sample = &info.Samples[i]
		}
	}
	if sample == nil {
		t.Fatal("no sample consul.raft.commitTime")
	}
	// 2 and 3 ms fall in (1, 2.5] and (2.5, 5]; 40 ms in (25, 50].
	if sample.Count != 3 || sample.Sum != 45 || sample.Mean != 15 || sample.Min != 1 || sample.Max != 50 || sample.Stddev <= 0 {
		t.Errorf("sample = %+v, want count 3, sum 45, mean 15, min 1 and max 50 (bucket bounds), a stddev", *sample)
	}
}

func TestPrometheusText(t *testing.T) {
	r := New("h")
	r.Counter("consul.kvs.apply", "writes", "op").WithLabelValues("set").Inc()
	r.Timer("consul.dns.query", "queries", "rcode").With("NOERROR").Observe(time.Millisecond)
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/agent/metrics?format=prometheus", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`consul_kvs_apply{op="set"} 1`,
		`consul_dns_query_bucket{rcode="NOERROR",le="1"} 1`,
		`consul_dns_query_count{rcode="NOERROR"} 1`,
		"# TYPE consul_runtime_num_goroutines gauge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("Prometheus text lacks %q", want)
		}
	}
}

// TestRegistriesAreIndependent: two agents in one process (tests do
// that) each have their own series.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New("a"), New("b")
	a.Counter("consul.x", "x").WithLabelValues().Inc()
	b.Counter("consul.x", "x").WithLabelValues() // would panic on a shared registry
	ia, _ := a.Snapshot()
	ib, _ := b.Snapshot()
	count := func(info Info) int {
		for _, c := range info.Counters {
			if c.Name == "consul.x" {
				return c.Count
			}
		}
		return -1
	}
	if count(ia) != 1 || count(ib) != 0 {
		t.Errorf("consul.x = %d and %d, want 1 and 0", count(ia), count(ib))
	}
}
