package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent"
	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/registratortest"
	"github.com/hashicorp/consul/api"
)

// startAgent runs a cairn dev agent in-process on loopback ports until the
// test ends and returns its HTTP address and an API client.
func startAgent(t testing.TB) (string, *api.Client) {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.Ports = agent.Ports{HTTP: 0, DNS: -1, SerfLAN: 0, Server: 0}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent stopped before starting: %v", err)
	}
	addr := a.HTTPAddr().String()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return addr, c
}

// eventually polls cond (the agent is reached over HTTP, there is nothing
// to block on) until it returns "", or fails with its last answer.
func eventually(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(last)
}

func container(n int, labels map[string]string) *registrator.Container {
	return &registrator.Container{
		ID:     fmt.Sprintf("c%d", n),
		Name:   fmt.Sprintf("/web%d", n),
		Config: registrator.ContainerConfig{Image: "team/web:1", Labels: labels, ExposedPorts: map[string]struct{}{"80/tcp": {}}},
		NetworkSettings: registrator.NetworkSettings{IPAddress: fmt.Sprintf("172.17.0.%d", n+1),
			Ports: map[string][]registrator.PortBinding{"80/tcp": {{HostIP: "0.0.0.0", HostPort: fmt.Sprint(8080 + n)}}}},
		HostConfig: registrator.HostConfig{NetworkMode: "default"},
		State:      registrator.State{Running: true},
	}
}

// TestConsulBackendAgainstCairn runs the registrator over a fake engine
// against a real cairn agent through consul://, and reads the result
// with Consul's own client.
func TestConsulBackendAgainstCairn(t *testing.T) {
	addr, c := startAgent(t)
	// Left over from a registrator that crashed on this host, and one of
	// another host's.
	for _, id := range []string{"host1:ghost:80", "host2:web1:80"} {
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Port: 1}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := registrator.NewConsul(&url.URL{Scheme: "consul", Host: addr})
	if err != nil {
		t.Fatal(err)
	}
	e := registratortest.NewEngine()
	e.Put(container(1, map[string]string{"SERVICE_TAGS": "a,b", "SERVICE_REGION": "eu", "SERVICE_CHECK_TTL": "30s"}))
	healthy := container(2, map[string]string{"SERVICE_NAME": "api"})
	healthy.State.Health = "healthy"
	e.Put(healthy)
	cfg := registrator.DefaultConfig()
	cfg.Hostname, cfg.HostIP = "host1", "10.0.0.1"
	r, err := registrator.New(cfg, e, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	services := func() (map[string]*api.AgentService, map[string]*api.AgentCheck, string) {
		s, err := c.Agent().Services()
		if err != nil {
			return nil, nil, err.Error()
		}
		ch, err := c.Agent().Checks()
		if err != nil {
			return nil, nil, err.Error()
		}
		return s, ch, ""
	}
	ids := func(m map[string]*api.AgentService) string {
		var out []string
		for id := range m {
			out = append(out, id)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	eventually(t, func() string {
		s, _, errText := services()
		if errText != "" {
			return errText
		}
		if got, want := ids(s), "host1:web1:80 host1:web2:80 host2:web1:80"; got != want {
			return fmt.Sprintf("agent services = %q, want %q", got, want)
		}
		return ""
	})
	s, checks, _ := services()
	w := s["host1:web1:80"]
	if w.Service != "web" || w.Address != "10.0.0.1" || w.Port != 8081 || strings.Join(w.Tags, ",") != "a,b" || w.Meta["region"] != "eu" {
		t.Errorf("host1:web1:80 = %+v", w)
	}
	if ch := checks["service:host1:web1:80"]; ch == nil || ch.Type != "ttl" {
		t.Errorf("SERVICE_CHECK_TTL: check service:host1:web1:80 = %+v, want a ttl check", ch)
	}
	if ch := checks["registrator:host1:web2:80"]; ch == nil || ch.Status != "passing" || ch.ServiceID != "host1:web2:80" {
		t.Errorf("HEALTHCHECK healthy: check registrator:host1:web2:80 = %+v, want passing", ch)
	}

	// The healthcheck fails: the instance turns critical; the container
	// is removed: the instance goes.
	sick := *healthy
	sick.State.Health = "unhealthy"
	e.Set(&sick, "health_status: unhealthy")
	eventually(t, func() string {
		_, ch, errText := services()
		if errText != "" {
			return errText
		}
		if c := ch["registrator:host1:web2:80"]; c == nil || c.Status != "critical" {
			return fmt.Sprintf("after health_status: unhealthy, check = %+v, want critical", c)
		}
		return ""
	})
	e.Remove("c2", "die", "destroy")
	eventually(t, func() string {
		s, _, errText := services()
		if errText != "" {
			return errText
		}
		if got, want := ids(s), "host1:web1:80 host2:web1:80"; got != want {
			return fmt.Sprintf("agent services = %q, want %q", got, want)
		}
		return ""
	})
	if err := reg.Deregister(t.Context(), &registrator.Service{ID: "never-registered"}); err != nil {
		t.Errorf("Deregister of an unknown ID: %v, want nil", err)
	}
}

// TestConsulKVBackendAgainstCairn pins registrator's consulkv layout.
func TestConsulKVBackendAgainstCairn(t *testing.T) {
	addr, c := startAgent(t)
	kv, err := registrator.NewConsulKV(&url.URL{Scheme: "consulkv", Host: addr, Path: "/services"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	eventually(t, func() string { // KV writes need the dev server's Raft leader
		if l, err := c.Status().Leader(); err != nil || l == "" {
			return fmt.Sprintf("no leader: %q, %v", l, err)
		}
		return ""
	})
	if err := kv.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	s := &registrator.Service{ID: "host1:web1:80", Name: "web", Address: "10.0.0.1", Port: 8081}
	if err := kv.Register(ctx, s); err != nil {
		t.Fatal(err)
	}
	p, _, err := c.KV().Get("services/web/host1:web1:80", nil)
	if err != nil || p == nil || string(p.Value) != "10.0.0.1:8081" {
		t.Fatalf("key services/web/host1:web1:80 = %+v, %v; want 10.0.0.1:8081", p, err)
	}
	list, err := kv.Services(ctx)
	if err != nil || len(list) != 1 || list[0].ID != s.ID || list[0].Name != "web" || list[0].Port != 8081 {
		t.Errorf("Services = %+v, %v", list, err)
	}
	s.Status = registrator.StatusCritical // draining: readers of the prefix stop seeing it
	if err := kv.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := c.KV().Get("services/web/host1:web1:80", nil); p != nil {
		t.Errorf("critical instance still has its key: %q", p.Value)
	}
	s.Status = registrator.StatusPassing
	if err := kv.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := kv.Deregister(ctx, s); err != nil {
		t.Fatal(err)
	}
	if pairs, _, _ := c.KV().List("services/", nil); len(pairs) != 0 {
		t.Errorf("after Deregister: %d keys left", len(pairs))
	}
}

// unixProxy serves the agent at addr on a unix socket until the test
// ends and returns the socket's path.
func unixProxy(t *testing.T, addr string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "consul.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	us := &http.Server{Handler: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})}
	go us.Serve(ln)
	t.Cleanup(func() { us.Close() })
	return sock
}

// TestConsulKVUnixURI reaches the agent's KV store through a unix socket
// with upstream's consulkv-unix://<socket path>:/<prefix>.
func TestConsulKVUnixURI(t *testing.T) {
	addr, c := startAgent(t)
	sock := unixProxy(t, addr)
	eventually(t, func() string { // KV writes need the dev server's Raft leader
		if l, err := c.Status().Leader(); err != nil || l == "" {
			return fmt.Sprintf("no leader: %q, %v", l, err)
		}
		return ""
	})
	uri := "consulkv-unix://" + sock + ":/services"
	var stderr strings.Builder
	if _, err := parse([]string{uri}, &stderr, noEnv); err != nil {
		t.Fatalf("parse %s: %v\n%s", uri, err, stderr.String())
	}
	u, _ := url.Parse(uri)
	reg, err := backends()[u.Scheme](u)
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	if err := reg.Ping(t.Context()); err != nil {
		t.Fatalf("%s: Ping: %v", uri, err)
	}
	s := &registrator.Service{ID: "host1:web1:80", Name: "web", Address: "10.0.0.1", Port: 8081}
	if err := reg.Register(t.Context(), s); err != nil {
		t.Fatalf("%s: Register: %v", uri, err)
	}
	p, _, err := c.KV().Get("services/web/host1:web1:80", nil)
	if err != nil || p == nil || string(p.Value) != "10.0.0.1:8081" {
		t.Errorf("%s: key services/web/host1:web1:80 = %+v, %v; want 10.0.0.1:8081", uri, p, err)
	}
	if err := reg.Deregister(t.Context(), s); err != nil {
		t.Errorf("%s: Deregister: %v", uri, err)
	}
}

// TestConsulUnixAndTLSURIs reaches the agent through a unix socket
// (consul-unix://) and through TLS with CONSUL_CACERT (consul-tls://),
// each a proxy in front of the agent.
func TestConsulUnixAndTLSURIs(t *testing.T) {
	addr, _ := startAgent(t)
	sock := unixProxy(t, addr)

	ts := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr}))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_CACERT", ca)

	for _, uri := range []string{"consul-unix://" + sock, "consul-tls://" + ts.Listener.Addr().String()} {
		u, _ := url.Parse(uri)
		reg, err := backends()[u.Scheme](u)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		s := &registrator.Service{ID: "host1:web1:80", Name: "web", Address: "10.0.0.1", Port: 8081,
			Status: registrator.StatusPassing, StatusTTL: time.Minute}
		if err := reg.Ping(t.Context()); err != nil {
			t.Fatalf("%s: Ping: %v", uri, err)
		}
		if err := reg.Register(t.Context(), s); err != nil {
			t.Fatalf("%s: Register: %v", uri, err)
		}
		got, err := reg.Services(t.Context())
		if err != nil || len(got) != 1 || got[0].ID != s.ID {
			t.Errorf("%s: Services = %+v, %v", uri, got, err)
		}
		if err := reg.Deregister(t.Context(), s); err != nil {
			t.Errorf("%s: Deregister: %v", uri, err)
		}
	}
}

// BenchmarkBurstConsulCairn is the container burst through consul:// into
// a real in-process cairn agent: each registration is an HTTP PUT
// /v1/agent/service/register. Reports registrations/s until the agent
// lists all of them, and deregistrations/s until it lists none. The burst
// is 500 containers (BENCH_N=10000 for the full one): the agent persists
// every registration with two fsyncs, which bounds this at tens per
// second on the development machines, far below the registrator's own
// rate (BenchmarkBurst10k in package registrator).
func BenchmarkBurstConsulCairn(b *testing.B) {
	n := 500
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil {
		n = v // a smaller burst, for profiling
	}
	addr, c := startAgent(b)
	reg, err := registrator.NewConsul(&url.URL{Scheme: "consul", Host: addr})
	if err != nil {
		b.Fatal(err)
	}
	count := func() int {
		s, err := c.Agent().Services()
		if err != nil {
			b.Fatal(err)
		}
		return len(s)
	}
	wait := func(want int) {
		deadline := time.Now().Add(5 * time.Minute)
		for count() != want {
			if time.Now().After(deadline) {
				b.Fatalf("agent lists %d services, want %d", count(), want)
			}
			time.Sleep(10 * time.Millisecond) // polling another server
		}
	}
	var regTime, deregTime time.Duration
	iters := 0
	for b.Loop() {
		e := registratortest.NewEngine()
		cfg := registrator.DefaultConfig()
		cfg.Hostname, cfg.HostIP = "host1", "10.0.0.1"
		r, err := registrator.New(cfg, e, reg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		<-e.Subscribed()
		t0 := time.Now()
		for i := range n {
			e.Set(container(i, nil), "create", "start")
		}
		wait(n)
		t1 := time.Now()
		for i := range n {
			e.Remove(fmt.Sprintf("c%d", i), "kill", "die", "destroy")
		}
		wait(0)
		t2 := time.Now()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		regTime += t1.Sub(t0)
		deregTime += t2.Sub(t1)
		iters++
	}
	b.ReportMetric(float64(n*iters)/regTime.Seconds(), "registrations/s")
	b.ReportMetric(float64(n*iters)/deregTime.Seconds(), "deregistrations/s")
}

// TestConsulBackendRefusedCheck: a container whose SERVICE_CHECK_* check
// the agent refuses (a Docker check on an agent without
// -enable-script-checks) is registered all the same, critical, with the
// agent's reason in the check's notes; one whose check the agent takes
// (gRPC) gets that check.
func TestConsulBackendRefusedCheck(t *testing.T) {
	addr, c := startAgent(t)
	reg, err := registrator.NewConsul(&url.URL{Scheme: "consul", Host: addr})
	if err != nil {
		t.Fatal(err)
	}
	docker := &registrator.Service{ID: "host1:dock:80", Name: "dock", Address: "10.0.0.1", Port: 80,
		Check: &registrator.Check{DockerID: "c1", Args: []string{"/check"}, Shell: "/bin/sh", Interval: "10s"}}
	grpc := &registrator.Service{ID: "host1:grpc:80", Name: "grpc", Address: "10.0.0.1", Port: 80,
		Check: &registrator.Check{GRPC: "10.0.0.1:80", Interval: "10s"}}
	for _, s := range []*registrator.Service{docker, grpc} {
		if err := reg.Register(t.Context(), s); err != nil {
			t.Fatalf("Register(%s) = %v, want the service registered", s.ID, err)
		}
	}
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	ch := checks["service:host1:dock:80"]
	if ch == nil || ch.Status != "critical" || ch.ServiceID != "host1:dock:80" || !strings.Contains(ch.Notes, "script checks are disabled") {
		t.Errorf("refused Docker check: check = %+v\nwant critical with the agent's reason in Notes", ch)
	}
	if ch := checks["service:host1:grpc:80"]; ch == nil || ch.Type != "grpc" {
		t.Errorf("gRPC check: check = %+v, want a grpc check", ch)
	}
}
