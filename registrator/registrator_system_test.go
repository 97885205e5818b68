//go:build system

package registrator_test

// System tests: the real registrator (New + DockerEngine) against the
// machine's Docker engine, writing to a recording Registry. Containers
// run dockertest's FROM scratch test image. Each test runs its own
// registrator with its own Hostname (the first part of every service ID),
// and reads only the registrations of containers it made itself: the
// engine is shared with whatever else runs on the machine.
//
// Run them with: go test -tags system -run '^TestSystem' -count=1 ./registrator/
// The container burst is e2e's TestSystemBurst, which watches one burst
// with this registrator, registrator consul:// and cairn agent -docker.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/dockertest"
	"github.com/cairn-dev/cairn/registrator/registratortest"
	"github.com/google/go-cmp/cmp"
)

// recorder is a Registry that keeps what it was asked in memory and
// writes a transcript. Every change closes the changed channel, so a test
// blocks on it instead of polling.
type recorder struct {
	prefix string // container-name prefix of the test's own containers

	mu      sync.Mutex
	svcs    map[string]registrator.Service
	first   map[string]time.Time // when each ID was first registered
	log     []string             // "register <id> <status>", "status <id> <status>", "deregister <id>"
	changed chan struct{}
}

func newRecorder(prefix string) *recorder {
	return &recorder{prefix: prefix, svcs: map[string]registrator.Service{}, first: map[string]time.Time{}, changed: make(chan struct{})}
}

func (r *recorder) note(line string) {
	r.log = append(r.log, line)
	close(r.changed)
	r.changed = make(chan struct{})
}

func clone(s *registrator.Service) registrator.Service {
	c := *s
	c.Tags = slices.Clone(s.Tags)
	c.Meta = maps.Clone(s.Meta)
	if s.Check != nil {
		ch := *s.Check
		ch.Args = slices.Clone(s.Check.Args)
		c.Check = &ch
	}
	return c
}

func (r *recorder) Register(_ context.Context, s *registrator.Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.first[s.ID]; !ok {
		r.first[s.ID] = time.Now()
	}
	r.svcs[s.ID] = clone(s)
	r.note(fmt.Sprintf("register %s %s", s.ID, s.Status))
	return nil
}

func (r *recorder) Deregister(_ context.Context, s *registrator.Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.svcs[s.ID]; !ok {
		return nil
	}
	delete(r.svcs, s.ID)
	r.note("deregister " + s.ID)
	return nil
}

func (r *recorder) Refresh(_ context.Context, s *registrator.Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.svcs[s.ID]
	if !ok {
		return fmt.Errorf("refresh of %s, which is not registered", s.ID)
	}
	if cur.Status != s.Status || cur.StatusNote != s.StatusNote {
		cur.Status, cur.StatusNote = s.Status, s.StatusNote
		r.svcs[s.ID] = cur
		r.note(fmt.Sprintf("status %s %s", s.ID, s.Status))
	}
	return nil
}

func (r *recorder) Services(context.Context) ([]*registrator.Service, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*registrator.Service, 0, len(r.svcs))
	for _, s := range r.svcs {
		c := clone(&s)
		out = append(out, &c)
	}
	return out, nil
}

func (r *recorder) Ping(context.Context) error { return nil }

// view is the registrations of the test's own containers, by ID.
func (r *recorder) view() map[string]registrator.Service {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.viewLocked()
}

func (r *recorder) viewLocked() map[string]registrator.Service {
	out := map[string]registrator.Service{}
	for id, s := range r.svcs {
		if strings.HasPrefix(s.ContainerName, r.prefix) {
			out[id] = s
		}
	}
	return out
}

// transcript is the log lines about the test's own services.
func (r *recorder) transcript(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		if f := strings.Fields(l); len(f) > 1 && f[1] == id {
			out = append(out, l)
		}
	}
	return out
}

// waitFor blocks until cond holds for the test's view of the registry,
// waking on each change; on timeout it fails with the last state.
func (r *recorder) waitFor(t testing.TB, timeout time.Duration, what string, cond func(map[string]registrator.Service) (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		v, ch := r.viewLocked(), r.changed
		r.mu.Unlock()
		ok, state := cond(v)
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("registry: timed out after %v waiting for %s; last seen: %s", timeout, what, state)
		case <-t.Context().Done():
			t.Fatalf("registry: test ended waiting for %s; last seen: %s", what, state)
		}
	}
}

// waitIDs waits until the test's registrations are exactly ids.
func (r *recorder) waitIDs(t testing.TB, timeout time.Duration, what string, ids ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(ids))
	r.waitFor(t, timeout, what, func(v map[string]registrator.Service) (bool, string) {
		got := slices.Sorted(maps.Keys(v))
		return slices.Equal(got, want), idDiff(got, want)
	})
}

// idDiff says how got differs from want.
func idDiff(got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return fmt.Sprintf("%d registered, %d wanted; missing %v; stale %v", len(got), len(want), abbrev(missing), abbrev(extra))
}

func abbrev(s []string) string {
	if len(s) > 8 {
		return fmt.Sprintf("%v ... (%d in all)", s[:8], len(s))
	}
	return fmt.Sprint(s)
}

// sys is one test's engine, registry and registrator settings.
type sys struct {
	t        testing.TB
	e        *dockertest.Engine
	rec      *recorder
	hostname string
}

func newSys(t testing.TB) *sys {
	e := dockertest.NeedDocker(t)
	return &sys{t: t, e: e, rec: newRecorder(e.Prefix), hostname: strings.TrimSuffix(e.Prefix, "-")}
}

// start runs a registrator against the engine at dockerHost ("" is the
// test's engine) until the returned stop is called or the test ends.
func (s *sys) start(dockerHost string, edit func(*registrator.Config)) (stop func()) {
	s.t.Helper()
	if dockerHost == "" {
		dockerHost = s.e.Host
	}
	eng, err := registrator.NewDockerEngine(dockerHost)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg := registrator.DefaultConfig()
	cfg.Hostname = s.hostname
	// -ip: the per-test hostname resolves nowhere, and without -ip
	// registrator would ask the machine's resolver for it. Containers
	// publish on 127.0.0.1, so the address is the same either way.
	cfg.HostIP = "127.0.0.1"
	cfg.Logger = testLogger(s.t)
	if edit != nil {
		edit(&cfg)
	}
	return registratortest.Start(s.t, cfg, eng, s.rec, eng.Close)
}

// id is the service ID registrator gives a container's port.
func (s *sys) id(c *dockertest.Container, port string) string {
	return s.hostname + ":" + c.Name + ":" + port
}

// reg is the part of a registration the tests compare.
type reg struct {
	ID, Name, Address string
	Port              int
	Tags              []string
	Meta              map[string]string
	Check             *registrator.Check
}

func project(v map[string]registrator.Service) map[string]reg {
	out := map[string]reg{}
	for id, s := range v {
		out[id] = reg{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta, Check: s.Check}
	}
	return out
}

func hostPort(t *testing.T, c *dockertest.Container, port string) (string, int) {
	t.Helper()
	hp := c.HostPort(port)
	i := strings.LastIndex(hp, ":")
	n, err := strconv.Atoi(hp[i+1:])
	if err != nil {
		t.Fatalf("host port of %s %s: %q", c.Name, port, hp)
	}
	return hp[:i], n
}

// TestSystemRegistrationForms: representative SERVICE_* label and env
// forms on real containers give the registrations registrator makes
// (the exhaustive table is the unit test of the model).
func TestSystemRegistrationForms(t *testing.T) {
	s := newSys(t)
	net := s.e.Network(dockertest.NetworkSpec{Name: "app"})
	net2 := s.e.Network(dockertest.NetworkSpec{Name: "back"})
	s.start("", func(c *registrator.Config) { c.Tags = `sys,{{index .Config.Labels "tier"}}` })

	pub := func(name string, spec dockertest.ContainerSpec) dockertest.ContainerSpec {
		spec.Name, spec.Publish = name, true
		if spec.TCP == nil && spec.UDP == nil {
			spec.TCP = []int{80}
		}
		return spec
	}
	plain := s.e.Run(pub("plain", dockertest.ContainerSpec{}))
	labels := s.e.Run(pub("labels", dockertest.ContainerSpec{Labels: map[string]string{
		"SERVICE_NAME": "web", "SERVICE_TAGS": "a,b", "SERVICE_REGION": "eu",
		"SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "5s", "tier": "front",
	}}))
	envLabel := s.e.Run(pub("envlabel", dockertest.ContainerSpec{
		Env:    []string{"SERVICE_NAME=fromenv", "SERVICE_TAGS=envtag", "SERVICE_OWNER=env", "SERVICE_CHECK_TCP=true"},
		Labels: map[string]string{"SERVICE_NAME": "fromlabel"},
	}))
	multi := s.e.Run(pub("multi", dockertest.ContainerSpec{TCP: []int{80, 8080}, UDP: []int{53}, Labels: map[string]string{
		"SERVICE_NAME": "multi", "SERVICE_8080_NAME": "admin", "SERVICE_8080_TAGS": "adm", "SERVICE_53_CHECK_TTL": "30s",
	}}))
	ignored := s.e.Run(pub("ignored", dockertest.ContainerSpec{Labels: map[string]string{"SERVICE_IGNORE": "true"}}))
	unpublished := s.e.Run(dockertest.ContainerSpec{Name: "unpublished", TCP: []int{80}})
	declared := s.e.Run(dockertest.ContainerSpec{Name: "declared", Env: []string{"SERVICE_PORT=9000", "SERVICE_NAME=declared"}})
	userNet := s.e.Run(dockertest.ContainerSpec{Name: "usernet", TCP: []int{80}, Network: net,
		Labels: map[string]string{"SERVICE_INTERNAL": "true", "SERVICE_NAME": "usernet"}})
	multiNet := s.e.Run(dockertest.ContainerSpec{Name: "multinet", TCP: []int{80}, Networks: []string{net, net2},
		Labels: map[string]string{"SERVICE_INTERNAL": "true", "SERVICE_NETWORK": net2, "SERVICE_NAME": "multinet"}})
	// SERVICE_IGNORE, and a port published nowhere without -internal:
	// no registration (want below has none for them).
	_, _ = ignored, unpublished

	lo, plainPort := hostPort(t, plain, "80/tcp")
	_, labelsPort := hostPort(t, labels, "80/tcp")
	_, envPort := hostPort(t, envLabel, "80/tcp")
	_, m80 := hostPort(t, multi, "80/tcp")
	_, m8080 := hostPort(t, multi, "8080/tcp")
	_, m53 := hostPort(t, multi, "53/udp")
	sys := []string{"sys"}
	want := map[string]reg{
		s.id(plain, "80"): {ID: s.id(plain, "80"), Name: "cairn-testserver", Address: lo, Port: plainPort, Tags: sys},
		s.id(labels, "80"): {ID: s.id(labels, "80"), Name: "web", Address: lo, Port: labelsPort,
			Tags:  []string{"a", "b", "sys", "front"},
			Meta:  map[string]string{"region": "eu", "check_http": "/health", "check_interval": "5s"},
			Check: &registrator.Check{HTTP: fmt.Sprintf("http://%s:%d/health", lo, labelsPort), Interval: "5s"}},
		s.id(envLabel, "80"): {ID: s.id(envLabel, "80"), Name: "fromlabel", Address: lo, Port: envPort,
			Tags: []string{"envtag", "sys"}, Meta: map[string]string{"owner": "env", "check_tcp": "true"},
			Check: &registrator.Check{TCP: fmt.Sprintf("%s:%d", lo, envPort), Interval: registrator.DefaultCheckInterval}},
		s.id(multi, "80"):   {ID: s.id(multi, "80"), Name: "multi-80", Address: lo, Port: m80, Tags: sys},
		s.id(multi, "8080"): {ID: s.id(multi, "8080"), Name: "admin", Address: lo, Port: m8080, Tags: []string{"adm", "sys"}},
		s.id(multi, "53") + ":udp": {ID: s.id(multi, "53") + ":udp", Name: "multi-53", Address: lo, Port: m53,
			Tags: []string{"sys", "udp"}, Meta: map[string]string{"check_ttl": "30s"}, Check: &registrator.Check{TTL: "30s"}},
		s.id(declared, "9000"): {ID: s.id(declared, "9000"), Name: "declared", Address: declared.IP("bridge"), Port: 9000, Tags: sys},
		s.id(userNet, "80"):    {ID: s.id(userNet, "80"), Name: "usernet", Address: userNet.IP(net), Port: 80, Tags: sys},
		s.id(multiNet, "80"):   {ID: s.id(multiNet, "80"), Name: "multinet", Address: multiNet.IP(net2), Port: 80, Tags: sys},
	}
	var diff string
	s.rec.waitFor(t, 60*time.Second, "the registrations of 9 containers", func(v map[string]registrator.Service) (bool, string) {
		diff = cmp.Diff(want, project(v))
		return diff == "", "(-want +got)\n" + diff
	})

	// They go when the containers do.
	s.e.RemoveMany([]*dockertest.Container{plain, labels, envLabel, multi, declared, userNet, multiNet}, 4)
	s.rec.waitIDs(t, 60*time.Second, "every registration gone after docker rm -f")
}

// TestSystemStopKillDie: docker stop, docker kill, a crash (the process
// exits on its own: "die" with no stop or kill) and docker rm -f each
// deregister the container's service under -deregister always.
func TestSystemStopKillDie(t *testing.T) {
	s := newSys(t)
	s.start("", nil)
	var cs []*dockertest.Container
	for _, n := range []string{"stop", "kill", "die", "rm"} {
		cs = append(cs, s.e.Run(dockertest.ContainerSpec{Name: n, TCP: []int{80}, Publish: true}))
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, s.id(c, "80"))
	}
	s.rec.waitIDs(t, 60*time.Second, "4 containers registered", ids...)

	steps := []struct {
		what string
		do   func(c *dockertest.Container)
	}{
		{"docker stop", func(c *dockertest.Container) { c.Stop(-1) }},
		{"docker kill", func(c *dockertest.Container) { c.Kill("") }},
		{"a crash (exit 3)", func(c *dockertest.Container) { c.Exit(3) }},
		{"docker rm -f", func(c *dockertest.Container) { c.Remove() }},
	}
	for i, step := range steps {
		step.do(cs[i])
		s.rec.waitIDs(t, 30*time.Second, ids[i]+" gone after "+step.what, ids[i+1:]...)
		checkLifecycle(t, s.rec.transcript(ids[i]), ids[i])
	}
}

// checkLifecycle checks the transcript of a service whose container came
// and went: registered once, then at most marked critical (drain: the
// engine reported a stopping signal), then deregistered once.
func checkLifecycle(t *testing.T, tr []string, id string) {
	t.Helper()
	ok := len(tr) >= 2 && tr[0] == "register "+id+" " && tr[len(tr)-1] == "deregister "+id
	for _, l := range tr[1 : len(tr)-1] {
		ok = ok && (l == "register "+id+" critical" || l == "status "+id+" critical")
	}
	if !ok {
		t.Errorf("transcript of %s = %q\nwant: register, then at most a critical status (drain), then deregister", id, tr)
	}
}

// TestSystemDeregisterOnSuccess: with -deregister on-success, a
// container that exits 0 (a stop it handles) is deregistered; one that
// fails (exit 3) keeps its registration until it is removed; one killed
// by a signal (exit 137) is not a failure and goes at once.
func TestSystemDeregisterOnSuccess(t *testing.T) {
	s := newSys(t)
	s.start("", func(c *registrator.Config) { c.Deregister = "on-success" })
	ok := s.e.Run(dockertest.ContainerSpec{Name: "ok", TCP: []int{80}, Publish: true})
	failed := s.e.Run(dockertest.ContainerSpec{Name: "failed", TCP: []int{80}, Publish: true})
	killed := s.e.Run(dockertest.ContainerSpec{Name: "killed", TCP: []int{80}, Publish: true})
	okID, failedID, killedID := s.id(ok, "80"), s.id(failed, "80"), s.id(killed, "80")
	s.rec.waitIDs(t, 60*time.Second, "3 containers registered", okID, failedID, killedID)

	// The failure first: its die event is handled before the later
	// ones, whose effects the test can see.
	failed.Exit(3)
	ok.Stop(-1)
	if code := ok.WaitExited(); code != 0 {
		t.Fatalf("%s exited %d after docker stop, want 0", ok.Name, code)
	}
	killed.Kill("")
	s.rec.waitIDs(t, 30*time.Second, "the exit-0 and the SIGKILLed container deregistered, the failed one kept", failedID)
	// ... and it stays: nothing takes it away while the container exists.
	if state := dockertest.Poll(t, 2*time.Second, func() (bool, string) {
		_, there := s.rec.view()[failedID]
		return !there, "registered"
	}); state == "" {
		t.Fatalf("%s (exit 3) was deregistered under -deregister on-success; transcript %q", failedID, s.rec.transcript(failedID))
	}
	failed.Remove()
	s.rec.waitIDs(t, 30*time.Second, "the failed container deregistered once removed")
}

// TestSystemRestartMatchesDockerPS: registrator is stopped (its context
// cancelled) while containers come and go; a new one started with the
// same registry and hostname makes the registry match docker ps exactly.
func TestSystemRestartMatchesDockerPS(t *testing.T) {
	s := newSys(t)
	stop := s.start("", nil)
	spec := func(n string) dockertest.ContainerSpec {
		return dockertest.ContainerSpec{Name: n, TCP: []int{80}, Publish: true}
	}
	var first []*dockertest.Container
	for i := range 6 {
		first = append(first, s.e.Run(spec(fmt.Sprintf("a%d", i))))
	}
	s.matchesDockerPS(60 * time.Second)

	// Killed in the middle of work: containers are being started and
	// removed when it stops, and more change while it is down.
	more := s.e.RunMany([]dockertest.ContainerSpec{spec("b0"), spec("b1"), spec("b2")}, 3)
	first[0].Remove()
	stop()
	first[1].Remove()
	first[2].Stop(0)
	first[3].Kill("")
	more[0].Remove()
	s.e.Run(spec("c0"))
	s.e.Run(spec("c1"))
	t.Logf("registry while registrator is down: %s", idDiff(slices.Sorted(maps.Keys(s.rec.view())), s.dockerPSIDs()))

	s.start("", nil)
	s.matchesDockerPS(60 * time.Second)
}

// dockerPSIDs are the service IDs the test's running containers (each
// publishing port 80) should have.
func (s *sys) dockerPSIDs() []string {
	var ids []string
	for _, name := range s.e.Running() {
		ids = append(ids, s.hostname+":"+name+":80")
	}
	return ids
}

// matchesDockerPS waits until the test's registrations are exactly its
// running containers: nothing stale, nothing missing.
func (s *sys) matchesDockerPS(timeout time.Duration) {
	s.t.Helper()
	dockertest.WaitFor(s.t, timeout, "the registry to match docker ps", func() (bool, string) {
		want := s.dockerPSIDs()
		got := slices.Sorted(maps.Keys(s.rec.view()))
		return slices.Equal(got, want), idDiff(got, want)
	})
}

// TestSystemEngineRestart: the engine itself crashes and comes back. The
// test runs its own dockerd (dockertest.StartDaemon: the machine's engine
// is shared and is never restarted), kills it with SIGKILL while
// containers are being started and removed, and starts it again.
// registrator resubscribes, resyncs, and the registry matches docker ps
// of that daemon exactly: containers with a restart policy are back and
// registered, the ones dockerd stopped at its restart and the ones removed
// are not. Then events flow again.
func TestSystemEngineRestart(t *testing.T) {
	d := dockertest.StartDaemon(t)
	e := d.Engine()
	e.Image()
	s := &sys{t: t, e: e, rec: newRecorder(e.Prefix), hostname: strings.TrimSuffix(e.Prefix, "-")}
	// The daemon has no bridge: containers run with network none and
	// say their address in a label (-useIpFromLabel).
	s.start(d.Host, func(c *registrator.Config) { c.Internal, c.UseIPFromLabel = true, "addr" })
	spec := func(n, restart string) dockertest.ContainerSpec {
		return dockertest.ContainerSpec{Name: n, TCP: []int{80}, Network: "none", Restart: restart,
			Labels: map[string]string{"addr": "192.0.2.1"}}
	}
	cs := e.RunMany([]dockertest.ContainerSpec{
		spec("always0", "always"), spec("always1", "always"), spec("plain0", ""), spec("plain1", ""), spec("gone", "always"),
	}, 5)
	s.matchesDockerPS(60 * time.Second)

	// Containers come and go while the daemon dies: starts in flight
	// (they may fail with the daemon), a removal just before the kill.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 4 {
			if _, err := e.TryRun(t.Context(), spec(fmt.Sprintf("inflight%d", i), "")); err != nil {
				t.Logf("start racing the kill: %v", err)
				return
			}
		}
	}()
	cs[4].Remove()
	d.Kill()
	wg.Wait()
	t.Logf("registry while dockerd is down: %d registrations", len(s.rec.view()))

	d.Start()
	cs[2].Remove() // removed after the restart, before registrator has resynced
	// dockerd restarts the containers with a restart policy as it comes
	// up; wait until docker ps shows them, then for the registry.
	dockertest.WaitFor(t, 60*time.Second, "dockerd to restart the containers with a restart policy", func() (bool, string) {
		running := e.Running()
		return slices.Contains(running, cs[0].Name) && slices.Contains(running, cs[1].Name), fmt.Sprint(running)
	})
	s.matchesDockerPS(90 * time.Second)
	got := s.rec.view()
	for _, c := range cs[:2] {
		if _, ok := got[s.id(c, "80")]; !ok {
			t.Errorf("%s (restart policy) is not registered after the daemon restart; registry %v", c.Name, slices.Sorted(maps.Keys(got)))
		}
	}
	for _, c := range cs[2:] {
		if _, ok := got[s.id(c, "80")]; ok {
			t.Errorf("%s is registered after the daemon restart, but is not running", c.Name)
		}
	}

	// And events flow again afterwards.
	e.Run(spec("after", ""))
	cs[0].Remove()
	s.matchesDockerPS(30 * time.Second)
}

// TestSystemSwarm: a Swarm service's tasks are registered under the
// service's name with their task addresses, and the registry follows
// docker service scale.
func TestSystemSwarm(t *testing.T) {
	s := newSys(t)
	s.e.InitSwarm()
	s.start("", nil)
	net := s.e.Network(dockertest.NetworkSpec{Name: "ov", Driver: "overlay", Attachable: true})
	svc := s.e.CreateService(dockertest.ServiceSpec{
		Name: "web", Replicas: 3, TCP: []int{80}, Networks: []string{net},
		Labels: map[string]string{"SERVICE_PORT": "80", "SERVICE_TAGS": "swarm"},
	})
	for _, n := range []int{3, 5, 1} {
		if n != 3 {
			svc.Scale(uint64(n))
		}
		tasks := svc.WaitRunning(n, 2*time.Minute)
		want := dockertest.TaskAddrs(tasks, net)
		s.rec.waitFor(t, 60*time.Second, fmt.Sprintf("%d instances of %s at the task addresses %v", n, svc.Name, want),
			func(v map[string]registrator.Service) (bool, string) {
				var got, bad []string
				for _, r := range v {
					got = append(got, fmt.Sprintf("%s:%d", r.Address, r.Port))
					if r.Name != svc.Name || !slices.Equal(r.Tags, []string{"swarm"}) {
						bad = append(bad, fmt.Sprintf("%s name=%s tags=%v", r.ID, r.Name, r.Tags))
					}
				}
				slices.Sort(got)
				var wantAP []string
				for _, a := range want {
					wantAP = append(wantAP, a+":80")
				}
				return slices.Equal(got, wantAP) && len(bad) == 0, fmt.Sprintf("instances %v, want %v; wrong: %v", got, wantAP, bad)
			})
	}
	svc.Remove()
	s.rec.waitIDs(t, 60*time.Second, "no instances after docker service rm")
}

// TestSystemHealthcheckAndDrain: a Docker HEALTHCHECK drives the status
// registrator reports (starting/unhealthy critical, healthy passing), and
// docker stop marks the instance critical before it is deregistered
// (graceful drain: the process is still serving during its shutdown).
func TestSystemHealthcheckAndDrain(t *testing.T) {
	s := newSys(t)
	s.start("", func(c *registrator.Config) { c.TTL = 30 * time.Second })
	c := s.e.Run(dockertest.ContainerSpec{Name: "hc", TCP: []int{80}, Publish: true, Healthcheck: true, TermDelay: 2 * time.Second})
	id := s.id(c, "80")
	status := func(want registrator.Status) {
		t.Helper()
		s.rec.waitFor(t, 30*time.Second, id+" "+string(want), func(v map[string]registrator.Service) (bool, string) {
			r, ok := v[id]
			if !ok {
				return false, "not registered"
			}
			return r.Status == want, fmt.Sprintf("%s (%s)", r.Status, r.StatusNote)
		})
	}
	c.WaitHealth("healthy")
	status(registrator.StatusPassing)
	c.SetHealthy(false)
	c.WaitHealth("unhealthy")
	status(registrator.StatusCritical)
	c.SetHealthy(true)
	c.WaitHealth("healthy")
	status(registrator.StatusPassing)

	c.Stop(-1)
	s.rec.waitIDs(t, 30*time.Second, id+" deregistered after docker stop")
	tr := s.rec.transcript(id)
	last := len(tr) - 1
	if last < 1 || tr[last] != "deregister "+id || tr[last-1] != "status "+id+" critical" {
		t.Errorf("transcript of %s = %q\nwant it to end: status critical (draining), then deregister", id, tr)
	}
}

// testLogger sends registrator's warnings (and, with CAIRN_SYSTEM_LOG=info,
// its state changes) to the test log.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CAIRN_SYSTEM_LOG") == "info" {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// BenchmarkSystemStartToRegistered measures the time from the engine's
// start event for a container to registrator's Register call for it
// (the in-memory registry notes the time), one start after another.
// Run with -benchtime=200x for the p50/p99 figures.
func BenchmarkSystemStartToRegistered(b *testing.B) {
	s := newSys(b)
	s.start("", func(c *registrator.Config) { c.Internal = true })
	s.e.Image()
	var lat []time.Duration
	var cs []*dockertest.Container
	for b.Loop() {
		c := s.e.Run(dockertest.ContainerSpec{Name: fmt.Sprintf("l%03d", len(cs)), TCP: []int{80}, NoStart: true})
		cs = append(cs, c)
		started := c.StartTimed()
		id := s.id(c, "80")
		s.rec.waitFor(b, 30*time.Second, id+" registered", func(v map[string]registrator.Service) (bool, string) {
			_, ok := v[id]
			return ok, "not registered"
		})
		s.rec.mu.Lock()
		lat = append(lat, s.rec.first[id].Sub(started))
		s.rec.mu.Unlock()
	}
	b.StopTimer()
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	s.e.RemoveMany(cs, 4)
}
