package registrator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// webContainer is container n (ID c<n>, name /web<n>) running image web
// with port 80 published on host port 8080+n.
func webContainer(n int) *Container {
	return &Container{
		ID:     fmt.Sprintf("c%d", n),
		Name:   fmt.Sprintf("/web%d", n),
		Config: ContainerConfig{Image: "web:1", Labels: map[string]string{}, ExposedPorts: map[string]struct{}{"80/tcp": {}}},
		NetworkSettings: NetworkSettings{
			IPAddress: fmt.Sprintf("172.17.%d.%d", n/250, n%250+2),
			Ports:     map[string][]PortBinding{"80/tcp": {{HostIP: "0.0.0.0", HostPort: fmt.Sprint(8080 + n)}}},
		},
		HostConfig: HostConfig{NetworkMode: "default"},
		State:      State{Running: true},
	}
}

func stopped(c *Container, code int) *Container {
	cp := *c
	cp.State = State{ExitCode: code}
	return &cp
}

type harness struct {
	e   *fakeEngine
	reg *fakeRegistry
	r   *Registrator
	err chan error
}

// start runs a Registrator (Hostname host1, -ip 10.0.0.1) over a fake
// engine and registry until the test ends. Call it inside synctest.Test.
func start(t *testing.T, e *fakeEngine, reg *fakeRegistry, mod func(c *Config)) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Hostname = "host1"
	cfg.HostIP = "10.0.0.1"
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, e, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{e: e, reg: reg, r: r, err: make(chan error, 1)}
	go func() { h.err <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.err; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func TestStartReconcilesAndSweepsOnlyThisHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		e.containers["c1"] = webContainer(1)
		e.containers["c2"] = stopped(webContainer(2), 0)
		for _, id := range []string{"host1:old:80", "host1:old:53:udp", "host2:web9:80", "custom-id"} {
			reg.services[id] = &Service{ID: id, Name: "x"}
		}
		reg.quiet = true
		start(t, e, reg, nil)
		reg.waitIDs(t, "custom-id host1:web1:80 host2:web9:80")
	})
}

func TestContainerLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		start(t, e, reg, nil)
		<-e.subscribed
		c := webContainer(1)
		e.set(c, "create", "start")
		reg.waitIDs(t, "host1:web1:80")
		e.emit("c1", map[string]string{"signal": "15"}, "kill") // docker stop: drain first
		reg.waitIDs(t, "host1:web1:80=critical")
		e.set(stopped(c, 143), "die", "stop")
		reg.waitIDs(t, "")
		e.set(c, "start") // restarted: no longer draining
		reg.waitIDs(t, "host1:web1:80")
		e.emit("c1", map[string]string{"signal": "HUP"}, "kill") // not a stop
		e.remove("c1", "die", "destroy")
		reg.waitIDs(t, "")
		want := strings.Join([]string{
			"register host1:web1:80 10.0.0.1:8081",
			"register host1:web1:80 10.0.0.1:8081 critical",
			"deregister host1:web1:80",
			"register host1:web1:80 10.0.0.1:8081",
			"deregister host1:web1:80",
		}, "\n")
		if got := reg.transcript(); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestDeregisterOnSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		start(t, e, reg, func(c *Config) { c.Deregister = "on-success" })
		<-e.subscribed
		c := webContainer(1)
		e.set(c, "start")
		reg.waitIDs(t, "host1:web1:80")
		e.set(stopped(c, 1), "die") // failed: kept, it may be restarted
		synctest.Wait()
		if got := reg.ids(); got != "host1:web1:80" {
			t.Fatalf("after exit 1 with -deregister on-success: registry = %q, want it kept", got)
		}
		e.set(c, "start")
		e.set(stopped(c, 137), "die") // killed by a signal: removed
		reg.waitIDs(t, "")
		e.set(c, "start")
		reg.waitIDs(t, "host1:web1:80")
		e.set(stopped(c, 2), "die")
		synctest.Wait()
		e.remove("c1", "destroy") // removed: its registrations go too
		reg.waitIDs(t, "")
		e.set(c, "start")
		reg.waitIDs(t, "host1:web1:80")
		e.set(stopped(c, 0), "die")
		reg.waitIDs(t, "")
	})
}

func TestHealthcheckDrivesStatusAndIsHeartbeated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		start(t, e, reg, func(c *Config) { c.TTL = 30 * time.Second; c.TTLRefresh = 10 * time.Second })
		<-e.subscribed
		c := webContainer(1)
		c.State.Health = "starting"
		e.set(c, "start")
		reg.waitIDs(t, "host1:web1:80=critical")
		h := *c
		h.State.Health = "healthy"
		e.set(&h, "health_status: healthy")
		reg.waitIDs(t, "host1:web1:80=passing")
		time.Sleep(35 * time.Second) // fake time: three heartbeats
		synctest.Wait()
		u := *c
		u.State.Health = "unhealthy"
		e.set(&u, "exec_start: /probe", "exec_die", "health_status: unhealthy")
		reg.waitIDs(t, "host1:web1:80=critical")
		want := strings.Join([]string{
			"register host1:web1:80 10.0.0.1:8081 critical",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 critical",
		}, "\n")
		if got := reg.transcript(); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestEngineRestartResubscribesAndResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		e.containers["c1"] = webContainer(1)
		e.containers["c2"] = webContainer(2)
		start(t, e, reg, nil)
		reg.waitIDs(t, "host1:web1:80 host1:web2:80")
		<-e.subscribed
		e.restart()
		// While the engine is down, containers come and go unseen.
		e.mu.Lock()
		delete(e.containers, "c2")
		e.containers["c3"] = webContainer(3)
		e.mu.Unlock()
		time.Sleep(2 * time.Second) // several failed resubscribes, with backoff
		e.up()
		<-e.subscribed
		reg.waitIDs(t, "host1:web1:80 host1:web3:80")
	})
}

func TestCleanupOnResync(t *testing.T) {
	for _, cleanup := range []bool{false, true} {
		t.Run(fmt.Sprintf("cleanup=%v", cleanup), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, reg := newFakeEngine(), newFakeRegistry()
				e.containers["c1"] = webContainer(1)
				start(t, e, reg, func(c *Config) { c.Resync = time.Minute; c.Cleanup = cleanup })
				reg.waitIDs(t, "host1:web1:80")
				synctest.Wait() // the start-up sweep is done
				// A registration of this host that no container accounts
				// for appears (say, written by a crashed registrator).
				reg.Register(t.Context(), &Service{ID: "host1:ghost:80"})
				time.Sleep(61 * time.Second)
				synctest.Wait()
				want := "host1:ghost:80 host1:web1:80"
				if cleanup {
					want = "host1:web1:80"
				}
				if got := reg.ids(); got != want {
					t.Errorf("after a resync with -cleanup=%v: registry = %q, want %q", cleanup, got, want)
				}
			})
		})
	}
}

func TestRegisterFailureIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		reg.failNext = 2
		e.containers["c1"] = webContainer(1)
		start(t, e, reg, nil)
		reg.waitIDs(t, "host1:web1:80")
	})
}

func TestOneContainersEventsApplyInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		reg.quiet = true
		start(t, e, reg, nil)
		<-e.subscribed
		c := webContainer(1)
		for i := range 200 {
			e.set(c, "start")
			if i%2 == 1 {
				e.set(stopped(c, 0), "die")
			}
		}
		e.set(c, "start") // the final state: running
		reg.waitIDs(t, "host1:web1:80")
		e.set(stopped(c, 0), "die")
		reg.waitIDs(t, "")
	})
}

func TestRetryAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := newFakeEngine(), newFakeRegistry()
		reg.pingErr = fmt.Errorf("dial tcp 127.0.0.1:8500: connection refused")
		cfg := DefaultConfig()
		cfg.Hostname, cfg.HostIP, cfg.RetryAttempts, cfg.RetryInterval = "host1", "10.0.0.1", 2, time.Second
		r, err := New(cfg, e, reg)
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(t.Context())
		want := "registry not reachable after 3 attempt(s) 1s apart: dial tcp 127.0.0.1:8500: connection refused; check the registry URI, or raise -retry-attempts"
		if err == nil || err.Error() != want {
			t.Errorf("Run = %v, want %q", err, want)
		}
		if reg.pings != 3 {
			t.Errorf("pings = %d, want 3", reg.pings)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		mod  func(c *Config)
		want string
	}{
		{func(c *Config) { c.Deregister = "never" }, `-deregister="never": use always or on-success`},
		{func(c *Config) { c.HostIP = "myhost" }, `-ip="myhost" is not an IP address; give the host's address, e.g. -ip 10.0.0.5`},
		{func(c *Config) { c.TTL = 10 * time.Second; c.TTLRefresh = 10 * time.Second }, `-ttl-refresh=10s must be shorter than -ttl=10s, or the check expires between heartbeats`},
		{func(c *Config) { c.Tags = "{{.Config" }, `-tags="{{.Config" is not a valid Go template: template: tags:1: unclosed action`},
		{func(c *Config) { c.RetryAttempts = -2 }, `-retry-attempts=-2: use -1 (forever), 0 or more`},
		{func(c *Config) { c.Hostname = "a:b" }, `hostname "a:b" contains ':', which service IDs hostname:container:port cannot hold`},
	} {
		cfg := DefaultConfig()
		cfg.Hostname = "host1"
		tc.mod(&cfg)
		_, err := New(cfg, newFakeEngine(), newFakeRegistry())
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %q", cfg, err, tc.want)
		}
	}
}
