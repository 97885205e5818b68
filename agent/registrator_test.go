package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/registratortest"
	"github.com/hashicorp/consul/api"
)

func registratorContainer(n int, health string) *registrator.Container {
	return &registrator.Container{
		ID:     fmt.Sprintf("c%d", n),
		Name:   fmt.Sprintf("/web%d", n),
		Config: registrator.ContainerConfig{Image: "web:1", Labels: map[string]string{"SERVICE_CHECK_TCP": "true"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}},
		NetworkSettings: registrator.NetworkSettings{IPAddress: "172.17.0.2",
			Ports: map[string][]registrator.PortBinding{"80/tcp": {{HostIP: "0.0.0.0", HostPort: fmt.Sprint(8080 + n)}}}},
		State: registrator.State{Running: true, Health: health},
	}
}

// localState is the catalog's local services and check states as text:
// "id status..." per service, sorted.
func localState(cat *catalog.Catalog) string {
	checks := map[string][]string{}
	for _, c := range cat.LocalChecks() {
		checks[c.ServiceID] = append(checks[c.ServiceID], c.CheckID+"="+c.Status)
	}
	var out []string
	for _, s := range cat.LocalServices() {
		cs := checks[s.ID]
		slices.Sort(cs)
		out = append(out, fmt.Sprintf("%s %s %s:%d %s", s.ID, s.Name, s.Address, s.Port, strings.Join(cs, ",")))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// watched is catalogRegistry that signals each write on a channel
// (the catalog publishes changes only when it runs).
type watched struct {
	catalogRegistry
	mu      sync.Mutex
	changed chan struct{}
}

func (w *watched) wake() {
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func (w *watched) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *watched) Register(ctx context.Context, s *registrator.Service) error {
	defer w.wake()
	return w.catalogRegistry.Register(ctx, s)
}

func (w *watched) Deregister(ctx context.Context, s *registrator.Service) error {
	defer w.wake()
	return w.catalogRegistry.Deregister(ctx, s)
}

func (w *watched) Refresh(ctx context.Context, s *registrator.Service) error {
	defer w.wake()
	return w.catalogRegistry.Refresh(ctx, s)
}

// waitLocal blocks on the registry's writes until localState is want.
func waitLocal(t *testing.T, w *watched, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := w.wait()
		if got := localState(w.cat); got == want {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("catalog:\n%s\nwant:\n%s", localState(w.cat), want)
		}
	}
}

// TestRegistratorInProcess runs the registrator over a fake engine into
// a catalog through catalogRegistry: services, their SERVICE_CHECK_*
// check, the HEALTHCHECK-driven check, drain and removal.
func TestRegistratorInProcess(t *testing.T) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	cat, err := catalog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Left by a run of this agent whose container has gone since.
	if err := (catalogRegistry{cat}).Register(t.Context(), &registrator.Service{ID: "node-1:old:80", Name: "old"}); err != nil {
		t.Fatal(err)
	}
	e := registratortest.NewEngine()
	e.Put(registratorContainer(1, ""))
	e.Put(registratorContainer(2, "healthy"))
	rc := registrator.DefaultConfig()
	rc.Hostname, rc.HostIP = "node-1", "10.0.0.1"
	w := &watched{catalogRegistry: catalogRegistry{cat}, changed: make(chan struct{})}
	r, err := registrator.New(rc, e, w)
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
	waitLocal(t, w, strings.Join([]string{
		"node-1:web1:80 web 10.0.0.1:8081 service:node-1:web1:80=critical",
		"node-1:web2:80 web 10.0.0.1:8082 registrator:node-1:web2:80=passing,service:node-1:web2:80=critical",
	}, "\n"))
	<-e.Subscribed()
	e.Emit("c1", map[string]string{"signal": "SIGTERM"}, "kill")
	waitLocal(t, w, strings.Join([]string{
		"node-1:web1:80 web 10.0.0.1:8081 registrator:node-1:web1:80=critical,service:node-1:web1:80=critical",
		"node-1:web2:80 web 10.0.0.1:8082 registrator:node-1:web2:80=passing,service:node-1:web2:80=critical",
	}, "\n"))
	e.Remove("c1", "die", "destroy")
	waitLocal(t, w, "node-1:web2:80 web 10.0.0.1:8082 registrator:node-1:web2:80=passing,service:node-1:web2:80=critical")
}

// TestRegistratorChecks: every SERVICE_CHECK_* kind becomes the agent's
// check of that kind (gRPC and Docker exec included); a check this agent
// refuses (a Docker check without -enable-script-checks, a bad duration)
// still registers the service, with a critical check whose output says
// why, so the container is never dropped.
func TestRegistratorChecks(t *testing.T) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	// As the agent validates without -enable-script-checks.
	cfg.ValidateCheck = func(d checks.Definition) error { return d.Validate(false) }
	cat, err := catalog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := catalogRegistry{cat}
	tests := []struct {
		name              string
		check             registrator.Check
		wantType, wantSt  string
		wantOutputContain string
	}{
		{"http", registrator.Check{HTTP: "http://10.0.0.1:80/health", Interval: "10s"}, "http", "critical", ""},
		{"tcp", registrator.Check{TCP: "10.0.0.1:80", Interval: "10s", InitialStatus: "passing"}, "tcp", "passing", ""},
		{"ttl", registrator.Check{TTL: "30s"}, "ttl", "critical", ""},
		{"grpc", registrator.Check{GRPC: "10.0.0.1:9090", Interval: "10s"}, "grpc", "critical", ""},
		{"docker without script checks", registrator.Check{DockerID: "c1", Args: []string{"/check"}, Shell: "/bin/sh", Interval: "10s"}, "ttl", "critical",
			"registrator: the container's SERVICE_CHECK_* check cannot run on this agent: check \"service:node-1:docker-without-script-checks:80\": DockerContainerID=\"c1\" is a Docker (script) check, but script checks are disabled on this agent; start it with -enable-script-checks"},
		{"bad interval", registrator.Check{TCP: "10.0.0.1:80", Interval: "ten"}, "ttl", "critical",
			`registrator: the container's SERVICE_CHECK_* check cannot run on this agent: SERVICE_CHECK_INTERVAL="ten" is not a duration; use e.g. 10s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "node-1:" + strings.ReplaceAll(tt.name, " ", "-") + ":80"
			ch := tt.check
			if err := reg.Register(t.Context(), &registrator.Service{ID: id, Name: "web", Address: "10.0.0.1", Port: 80, Check: &ch}); err != nil {
				t.Fatalf("Register: %v", err)
			}
			var got *catalog.Check
			for _, c := range cat.LocalChecks() {
				if c.ServiceID == id {
					got = c
				}
			}
			if got == nil {
				t.Fatalf("service %s registered without its check; checks: %v", id, cat.LocalChecks())
			}
			if got.CheckID != "service:"+id || got.Type != tt.wantType || got.Status != tt.wantSt || !strings.Contains(got.Output, tt.wantOutputContain) {
				t.Errorf("check %s type %s status %s output %q\nwant service:%s %s %s output with %q", got.CheckID, got.Type, got.Status, got.Output, id, tt.wantType, tt.wantSt, tt.wantOutputContain)
			}
		})
	}
}

// BenchmarkRegistratorInProcess is the container burst into this agent's
// catalog through catalogRegistry, with the catalog in memory
// (datadir=no: 1,000 containers) and persisting each service to a data
// dir (datadir=yes: 200, two fsyncs per write, as an agent with -data-dir
// does); BENCH_N=10000 for the full burst. The catalog's commit
// re-encodes the node's whole state on every write, so the rate falls as
// the node's services grow: that, not the registrator, bounds it.
func BenchmarkRegistratorInProcess(b *testing.B) {
	for _, persist := range []bool{false, true} {
		name := map[bool]string{false: "datadir=no", true: "datadir=yes"}[persist]
		b.Run(name, func(b *testing.B) {
			n := 1000
			if persist {
				n = 200
			}
			if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil {
				n = v
			}
			var regTime, deregTime time.Duration
			iters := 0
			for b.Loop() {
				cfg := catalog.DefaultConfig()
				cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
				if persist {
					cfg.DataDir = b.TempDir()
				}
				cat, err := catalog.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				w := &watched{catalogRegistry: catalogRegistry{cat}, changed: make(chan struct{})}
				e := registratortest.NewEngine()
				rc := registrator.DefaultConfig()
				rc.Hostname, rc.HostIP = "node-1", "10.0.0.1"
				r, err := registrator.New(rc, e, w)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(b.Context())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				<-e.Subscribed()
				count := func(want int) {
					deadline := time.After(5 * time.Minute)
					for {
						ch := w.wait()
						if len(cat.LocalServices()) == want {
							return
						}
						select {
						case <-ch:
						case <-deadline:
							b.Fatalf("catalog holds %d services, want %d", len(cat.LocalServices()), want)
						}
					}
				}
				t0 := time.Now()
				for i := range n {
					c := registratorContainer(i, "")
					c.Config.Labels = nil
					e.Set(c, "create", "start")
				}
				count(n)
				t1 := time.Now()
				for i := range n {
					e.Remove(fmt.Sprintf("c%d", i), "kill", "die", "destroy")
				}
				count(0)
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
		})
	}
}

// fakeEngineAPI serves what the registrator asks an API 1.41 engine: one
// running container (a real engine's inspect answer, from
// registrator/testdata) and an event stream that stays open.
func fakeEngineAPI(t *testing.T) string {
	t.Helper()
	inspect, err := os.ReadFile("../registrator/testdata/inspect-api1.41.json")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("/v1.41/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/v1.41/containers/json", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"Id":"3df1ab6e16cf"}]`)
	})
	mux.HandleFunc("/v1.41/containers/3df1ab6e16cf/json", func(w http.ResponseWriter, r *http.Request) { w.Write(inspect) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

// TestAgentDocker: `cairn agent -docker` registers the engine's
// containers into its own catalog, IDs prefixed with the node name.
func TestAgentDocker(t *testing.T) {
	cfg := devConfig()
	cfg.NodeName = "node-d"
	cfg.Docker = true
	cfg.DockerHost = fakeEngineAPI(t)
	r := start(t, cfg)
	var idx uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A blocking query: returns when the catalog changes.
		svcs, meta, err := r.client.Catalog().Service("fixture", "", &api.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(svcs) == 1 {
			s := svcs[0]
			// Published ports are at the advertise address (-ip), 127.0.0.1
			// under -dev.
			if s.ServiceID != "node-d:regsmoke-fixture:8080" || s.ServiceAddress != "127.0.0.1" || s.ServicePort != 18080 || s.Node != "node-d" {
				t.Errorf("registered %s at %s:%d on %s", s.ServiceID, s.ServiceAddress, s.ServicePort, s.Node)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no service fixture after 20s: %+v", svcs)
		}
		idx = meta.LastIndex
	}
}
