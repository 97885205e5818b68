package registrator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	. "github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/registratortest"
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
	e   *registratortest.Engine
	reg *registratortest.Registry
	r   *Registrator
	err chan error
}

// start runs a Registrator (Hostname host1, -ip 10.0.0.1) over a fake
// engine and registry until the test ends. Call it inside synctest.Test.
func start(t *testing.T, e *registratortest.Engine, reg *registratortest.Registry, mod func(c *Config)) *harness {
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
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		e.Put(webContainer(1))
		e.Put(stopped(webContainer(2), 0))
		reg.Quiet()
		for _, id := range []string{"host1:old:80", "host1:old:53:udp", "host2:web9:80", "custom-id"} {
			reg.Register(t.Context(), &Service{ID: id, Name: "x"})
		}
		start(t, e, reg, nil)
		reg.WaitIDs(t, "custom-id host1:web1:80 host2:web9:80")
	})
}

func TestContainerLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		start(t, e, reg, func(c *Config) { c.DrainGrace = 10 * time.Second })
		<-e.Subscribed()
		c := webContainer(1)
		e.Set(c, "create", "start")
		reg.WaitIDs(t, "host1:web1:80")
		e.Emit("c1", map[string]string{"signal": "15"}, "kill") // docker stop: drain first
		reg.WaitIDs(t, "host1:web1:80=critical")
		time.Sleep(9 * time.Second) // the process takes its time to exit, within the grace
		e.Set(stopped(c, 143), "die", "stop")
		reg.WaitIDs(t, "")
		e.Set(c, "start") // restarted: no longer draining
		reg.WaitIDs(t, "host1:web1:80")
		e.Emit("c1", map[string]string{"signal": "HUP"}, "kill") // not a stop
		e.Remove("c1", "die", "destroy")
		reg.WaitIDs(t, "")
		want := strings.Join([]string{
			"register host1:web1:80 10.0.0.1:8081",
			"register host1:web1:80 10.0.0.1:8081 critical",
			"deregister host1:web1:80",
			"register host1:web1:80 10.0.0.1:8081",
			"deregister host1:web1:80",
		}, "\n")
		if got := reg.Transcript(); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestDeregisterOnSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		start(t, e, reg, func(c *Config) { c.Deregister = "on-success" })
		<-e.Subscribed()
		c := webContainer(1)
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80")
		e.Set(stopped(c, 1), "die") // failed: kept, it may be restarted
		synctest.Wait()
		if got := reg.IDs(); got != "host1:web1:80" {
			t.Fatalf("after exit 1 with -deregister on-success: registry = %q, want it kept", got)
		}
		e.Set(c, "start")
		e.Set(stopped(c, 137), "die") // killed by a signal: removed
		reg.WaitIDs(t, "")
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80")
		e.Set(stopped(c, 2), "die")
		synctest.Wait()
		e.Remove("c1", "destroy") // removed: its registrations go too
		reg.WaitIDs(t, "")
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80")
		e.Set(stopped(c, 0), "die")
		reg.WaitIDs(t, "")
	})
}

func TestHealthcheckDrivesStatusAndIsHeartbeated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		start(t, e, reg, func(c *Config) { c.TTL = 30 * time.Second; c.TTLRefresh = 10 * time.Second })
		<-e.Subscribed()
		c := webContainer(1)
		c.State.Health = "starting"
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80=critical")
		h := *c
		h.State.Health = "healthy"
		e.Set(&h, "health_status: healthy")
		reg.WaitIDs(t, "host1:web1:80=passing")
		time.Sleep(35 * time.Second) // fake time: three heartbeats
		synctest.Wait()
		u := *c
		u.State.Health = "unhealthy"
		e.Set(&u, "exec_start: /probe", "exec_die", "health_status: unhealthy")
		reg.WaitIDs(t, "host1:web1:80=critical")
		want := strings.Join([]string{
			"register host1:web1:80 10.0.0.1:8081 critical",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 passing",
			"refresh host1:web1:80 critical",
		}, "\n")
		if got := reg.Transcript(); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestEngineRestartResubscribesAndResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		e.Put(webContainer(1))
		e.Put(webContainer(2))
		start(t, e, reg, nil)
		reg.WaitIDs(t, "host1:web1:80 host1:web2:80")
		<-e.Subscribed()
		e.Restart()
		// While the engine is down, containers come and go unseen.
		e.Delete("c2")
		e.Put(webContainer(3))
		time.Sleep(2 * time.Second) // several failed resubscribes, with backoff
		e.Up()
		<-e.Subscribed()
		reg.WaitIDs(t, "host1:web1:80 host1:web3:80")
	})
}

func TestCleanupOnResync(t *testing.T) {
	for _, cleanup := range []bool{false, true} {
		t.Run(fmt.Sprintf("cleanup=%v", cleanup), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
				e.Put(webContainer(1))
				start(t, e, reg, func(c *Config) { c.Resync = time.Minute; c.Cleanup = cleanup })
				reg.WaitIDs(t, "host1:web1:80")
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
				if got := reg.IDs(); got != want {
					t.Errorf("after a resync with -cleanup=%v: registry = %q, want %q", cleanup, got, want)
				}
			})
		})
	}
}

func TestRegisterFailureIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		reg.FailRegisters(2)
		e.Put(webContainer(1))
		start(t, e, reg, nil)
		reg.WaitIDs(t, "host1:web1:80")
	})
}

func TestOneContainersEventsApplyInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		reg.Quiet()
		start(t, e, reg, nil)
		<-e.Subscribed()
		c := webContainer(1)
		for i := range 200 {
			e.Set(c, "start")
			if i%2 == 1 {
				e.Set(stopped(c, 0), "die")
			}
		}
		e.Set(c, "start") // the final state: running
		reg.WaitIDs(t, "host1:web1:80")
		e.Set(stopped(c, 0), "die")
		reg.WaitIDs(t, "")
	})
}

func TestRetryAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		reg.SetPingErr(fmt.Errorf("dial tcp 127.0.0.1:8500: connection refused"))
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
		if reg.Pings() != 3 {
			t.Errorf("pings = %d, want 3", reg.Pings())
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
		_, err := New(cfg, registratortest.NewEngine(), registratortest.NewRegistry())
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %q", cfg, err, tc.want)
		}
	}
}

func TestResyncRepairsWhatTheRegistryLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		e.Put(webContainer(1))
		e.Put(webContainer(2))
		start(t, e, reg, func(c *Config) { c.Resync = time.Minute })
		reg.WaitIDs(t, "host1:web1:80 host1:web2:80")
		synctest.Wait()
		before := reg.Transcript() + "\n"
		// The agent restarted without its data and lost one.
		reg.Deregister(t.Context(), &Service{ID: "host1:web2:80"})
		time.Sleep(61 * time.Second)
		reg.WaitIDs(t, "host1:web1:80 host1:web2:80")
		want := strings.Join([]string{
			"deregister host1:web2:80",
			"register host1:web2:80 10.0.0.1:8082", // and web1 was not rewritten
		}, "\n")
		if got := strings.TrimPrefix(reg.Transcript(), before); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestHeartbeatOfALostRegistrationRegistersAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		c := webContainer(1)
		c.State.Health = "healthy"
		e.Put(c)
		start(t, e, reg, nil) // -ttl 30s, refreshed every 10s
		reg.WaitIDs(t, "host1:web1:80=passing")
		synctest.Wait()
		reg.Deregister(t.Context(), &Service{ID: "host1:web1:80"})
		time.Sleep(11 * time.Second)
		reg.WaitIDs(t, "host1:web1:80=passing")
	})
}

func TestSwarmTaskOnAWorkerNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		c := webContainer(1)
		c.Name = "/web.1.x1"
		c.NetworkSettings = NetworkSettings{Networks: map[string]Network{"ingress": {IPAddress: "10.0.0.5"}, "app": {IPAddress: "10.0.1.5"}},
			Ports: map[string][]PortBinding{"80/tcp": nil}}
		c.Config.Labels = map[string]string{"com.docker.swarm.service.name": "web", "com.docker.swarm.service.id": "svc1"}
		e.Put(c) // no SetServiceLabels: inspecting the service fails, as on a worker
		start(t, e, reg, nil)
		reg.WaitIDs(t, "host1:web.1.x1:80")
		if s, _ := reg.Get("host1:web.1.x1:80"); s.Name != "web" || s.Address != "10.0.1.5" || s.Port != 80 {
			t.Errorf("task registered as %s %s:%d, want web 10.0.1.5:80", s.Name, s.Address, s.Port)
		}
	})
}

func TestReregistrationThatChangesStatusAlsoSetsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		start(t, e, reg, func(c *Config) { c.Internal = true })
		<-e.Subscribed()
		c := webContainer(1)
		c.State.Health = "healthy"
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80=passing")
		moved := *c // connected elsewhere and failing at once
		moved.NetworkSettings.IPAddress = "172.17.9.9"
		moved.State.Health = "unhealthy"
		e.Set(&moved, "network:connect", "health_status: unhealthy")
		reg.WaitIDs(t, "host1:web1:80=critical")
		synctest.Wait()
		want := strings.Join([]string{
			"register host1:web1:80 172.17.0.3:80 passing",
			"register host1:web1:80 172.17.9.9:80 critical",
			"refresh host1:web1:80 critical",
		}, "\n")
		if got := reg.Transcript(); got != want {
			t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestPausedContainerIsCritical(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		start(t, e, reg, nil)
		<-e.Subscribed()
		c := webContainer(1)
		e.Set(c, "start")
		reg.WaitIDs(t, "host1:web1:80")
		p := *c
		p.State.Paused = true
		e.Set(&p, "pause")
		reg.WaitIDs(t, "host1:web1:80=critical")
		e.Set(c, "unpause")
		reg.WaitIDs(t, "host1:web1:80")
	})
}

func TestFailedListIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		e.Put(webContainer(1))
		e.FailLists(3)
		reg.Register(t.Context(), &Service{ID: "host1:ghost:80"})
		start(t, e, reg, nil)
		reg.WaitIDs(t, "host1:web1:80") // listed at the fourth try, then swept
	})
}

// restarting is c as inspect shows it while the engine waits to restart
// it after it exited with code (restart policy): moby reports it
// running, and its published ports are gone.
func restarting(c *Container, code int) *Container {
	cp := *c
	cp.State = State{Running: true, Restarting: true, ExitCode: code}
	cp.NetworkSettings = NetworkSettings{}
	return &cp
}

// TestRestartingContainerIsNotRunning: a container the engine is about to
// restart is deregistered on die as an exited one is (-deregister), not
// registered again at the host's address and container port.
func TestRestartingContainerIsNotRunning(t *testing.T) {
	for _, tc := range []struct {
		deregister string
		code       int
		want       string // registry after die, then the transcript
	}{
		{"always", 1, ""},
		{"always", 0, ""},
		{"on-success", 0, ""},
		{"on-success", 137, ""}, // killed by a signal
		{"on-success", 1, "host1:web1:80"},
	} {
		t.Run(fmt.Sprintf("%s/exit=%d", tc.deregister, tc.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
				start(t, e, reg, func(c *Config) { c.Deregister = tc.deregister })
				<-e.Subscribed()
				c := webContainer(1)
				e.Set(c, "start")
				reg.WaitIDs(t, "host1:web1:80")
				e.Set(restarting(c, tc.code), "die")
				reg.WaitIDs(t, tc.want)
				synctest.Wait()
				e.Set(c, "start", "restart") // back, published again
				reg.WaitIDs(t, "host1:web1:80")
				synctest.Wait()
				want := "register host1:web1:80 10.0.0.1:8081\nderegister host1:web1:80\nregister host1:web1:80 10.0.0.1:8081"
				if tc.want != "" { // kept as it was while the container was down
					want = "register host1:web1:80 10.0.0.1:8081"
				}
				if got := reg.Transcript(); got != want {
					t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
				}
			})
		})
	}
}

// TestDeregisterOnSuccessKeepsAcrossARestart: registrations -deregister
// on-success keeps for a failed container are still this host's after
// registrator restarts: the start-up sweep leaves them, and they go when
// the container is removed.
func TestDeregisterOnSuccessKeepsAcrossARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		e.Put(stopped(webContainer(1), 1))
		// Left by the previous registrator: web1's, kept after it
		// failed, and one no container accounts for.
		reg.Register(t.Context(), &Service{ID: "host1:web1:80", Name: "web", Address: "10.0.0.1", Port: 8081})
		reg.Register(t.Context(), &Service{ID: "host1:ghost:80", Name: "ghost"})
		start(t, e, reg, func(c *Config) { c.Deregister = "on-success" })
		reg.WaitIDs(t, "host1:web1:80") // the start-up sweep is done
		synctest.Wait()
		e.Remove("c1", "destroy")
		reg.WaitIDs(t, "")
	})
}

// TestDrainEndsWhenTheContainerKeepsRunning: a stopping signal marks the
// container's instances critical at once, but a container still running
// after its stop timeout (5s more for the engine's SIGKILL and die), or
// after DrainGrace without one, was not stopping: docker kill
// --signal=QUIT only makes a JVM dump its threads.
func TestDrainEndsWhenTheContainerKeepsRunning(t *testing.T) {
	for _, tc := range []struct {
		name        string
		signal      string
		stopTimeout int // seconds; -1: none set
		critical    time.Duration
	}{
		{"thread dump", "QUIT", -1, 10 * time.Second},
		{"SIGINT ignored", "2", -1, 10 * time.Second},
		{"stop timeout", "SIGTERM", 60, 65 * time.Second},
		{"stop timeout 0", "15", 0, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
				start(t, e, reg, func(c *Config) { c.DrainGrace = 10 * time.Second })
				<-e.Subscribed()
				c := webContainer(1)
				if tc.stopTimeout >= 0 {
					c.Config.StopTimeout = &tc.stopTimeout
				}
				e.Set(c, "start")
				reg.WaitIDs(t, "host1:web1:80")
				killed := time.Now()
				e.Emit("c1", map[string]string{"signal": tc.signal}, "kill")
				reg.WaitIDs(t, "host1:web1:80=critical")
				time.Sleep(tc.critical - time.Second)
				synctest.Wait()
				if got := reg.IDs(); got != "host1:web1:80=critical" {
					t.Errorf("%v after the kill: registry = %q, want still critical", time.Since(killed), got)
				}
				reg.WaitIDs(t, "host1:web1:80")
				if got := time.Since(killed); got != tc.critical {
					t.Errorf("critical for %v after the kill, want %v", got, tc.critical)
				}
			})
		})
	}
}
