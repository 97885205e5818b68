//go:build system

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemPrometheusScrapesAndDiscovers runs the real Prometheus (the
// Debian package) against an agent: one job scrapes
// /v1/agent/metrics?format=prometheus directly; another scrapes the
// targets that Prometheus's own consul_sd_configs code
// (prometheus/discovery/consul) finds in cairn's catalog, from a service
// the test registers. Debian builds Prometheus without Consul SD
// ("Disable Consul SD until its Debian package is back in shape"), so
// the discovery runs in the test, with the same code and config, and
// hands its target groups to the binary through file_sd_configs.
func TestSystemPrometheusScrapesAndDiscovers(t *testing.T) {
	bin := systemtest.NeedCommand(t, "prometheus")
	r := start(t, devConfig())
	httpAddr := r.HTTPAddr().String()
	host, port, _ := net.SplitHostPort(httpAddr)
	p, _ := strconv.Atoi(port)
	if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "cairn-metrics", Name: "cairn-metrics", Address: host, Port: p, Tags: []string{"metrics"},
		Meta: map[string]string{"metrics_path": "/v1/agent/metrics"},
	}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cairn-static
    metrics_path: /v1/agent/metrics
    params: {format: [prometheus]}
    static_configs:
      - targets: [%q]
  - job_name: cairn-sd
    params: {format: [prometheus]}
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        target_label: __metrics_path__
      - source_labels: [__meta_consul_service]
        target_label: service
`, httpAddr, filepath.Join(dir, "consul-sd.json"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	discoverInto(t, httpAddr, []string{"cairn-metrics"}, filepath.Join(dir, "consul-sd.json"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})

	query := func(q string) (float64, string) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return 0, err.Error()
		}
		if len(body.Data.Result) == 0 {
			return 0, "no result"
		}
		v, _ := strconv.ParseFloat(fmt.Sprint(body.Data.Result[0].Value[1]), 64)
		return v, fmt.Sprint(body.Data.Result)
	}
	// Traffic for the series checked below.
	if _, err := r.client.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ what, q string }{
		{"the static job is up", `up{job="cairn-static"}`},
		{"the target found through consul_sd_configs is up", `up{job="cairn-sd",service="cairn-metrics"}`},
		{"a KV write is counted", `consul_kvs_apply_count{job="cairn-sd",op="set"}`},
		{"Raft commits are timed", `consul_raft_commitTime_count{job="cairn-static"}`},
		{"the catalog size is seen", `consul_catalog_services{job="cairn-sd"}`},
	} {
		eventually(t, tc.what, 60*time.Second, func() (bool, string) {
			v, last := query(tc.q)
			return v >= 1, tc.q + " = " + last
		})
	}
}

// discoverInto runs Prometheus's Consul service discovery against the
// agent at addr until the test ends, writing each update of the target
// groups to path in file_sd's format (labels included: the
// __meta_consul_* ones the relabel rules read). It waits for the first
// group with a target.
func discoverInto(t *testing.T, addr string, services []string, path string) {
	t.Helper()
	conf := consul.DefaultSDConfig
	conf.Server = addr
	conf.Services = services
	conf.RefreshInterval = model.Duration(time.Second)
	reg := prometheus.NewRegistry()
	refresh := discovery.NewRefreshMetrics(reg)
	metrics := conf.NewDiscovererMetrics(reg, refresh)
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	d, err := consul.NewDiscovery(&conf, nil, metrics)
	if err != nil {
		t.Fatalf("consul SD against cairn: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, ch)
	}()
	found := make(chan struct{})
	written := make(chan struct{})
	go func() {
		defer close(written)
		groups := map[string]*targetgroup.Group{}
		var once sync.Once
		for {
			select {
			case <-ctx.Done():
				return
			case tgs := <-ch:
				for _, g := range tgs {
					groups[g.Source] = g
				}
				type fileGroup struct {
					Targets []string          `json:"targets"`
					Labels  map[string]string `json:"labels"`
				}
				var out []fileGroup
				for _, g := range groups {
					for _, tg := range g.Targets {
						labels := map[string]string{}
						for k, v := range g.Labels {
							labels[string(k)] = string(v)
						}
						for k, v := range tg {
							labels[string(k)] = string(v)
						}
						out = append(out, fileGroup{Targets: []string{labels["__address__"]}, Labels: labels})
					}
				}
				b, _ := json.Marshal(out)
				tmp := path + ".tmp"
				if err := os.WriteFile(tmp, b, 0o600); err == nil {
					os.Rename(tmp, path)
				}
				if len(out) > 0 {
					once.Do(func() { close(found) })
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-written
	})
	select {
	case <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("Prometheus's Consul SD found no target for %v in cairn's catalog within 30s", services)
	}
}
