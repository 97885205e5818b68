package dockertest

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// ContainerSpec is a test container running the testserver.
type ContainerSpec struct {
	// Name is appended to the engine's Prefix; "" picks n<seq>.
	Name string
	// Image defaults to the test image (BuildImage).
	Image string
	// TCP ports the server serves HTTP on; each is also exposed.
	TCP []int
	// UDP ports the server echoes on; each is also exposed.
	UDP []int
	// Expose adds exposed ports ("8080/tcp") nobody listens on.
	Expose []string
	// Publish publishes every exposed port on PublishIP with a host port
	// the engine picks.
	Publish bool
	// PublishIP is the host address of published ports; "" means
	// 127.0.0.1, so nothing is reachable from outside the machine.
	PublishIP string
	// Labels and Env are the container's (the harness adds its labels).
	Labels map[string]string
	Env    []string
	// Hostname sets the container's hostname ("" is Docker's short ID).
	Hostname string
	// Network is the network the container starts on ("" is the
	// default bridge); Networks are connected too, before it starts.
	Network  string
	Networks []string
	// Healthcheck gives the container a Docker HEALTHCHECK that runs
	// testserver -probe every HealthInterval (default 300ms), one
	// failure making it unhealthy.
	Healthcheck    bool
	HealthInterval time.Duration
	// Unhealthy starts the server with /health failing.
	Unhealthy bool
	// TermCode is the exit code on SIGTERM (docker stop).
	TermCode int
	// TermDelay is how long the server keeps serving after SIGTERM
	// before it exits (a slow graceful shutdown).
	TermDelay time.Duration
	// StopTimeout is docker stop's grace period in seconds; 0 means 5.
	StopTimeout int
	// NoStart only creates the container.
	NoStart bool
	// Restart is the restart policy: "" (no), "always", "unless-stopped"
	// or "on-failure".
	Restart string
}

// Container is a container this test made; it is removed when the test
// ends.
type Container struct {
	ID   string
	Name string // without the leading "/"
	e    *Engine
}

// Image returns the test image, building it on first use by this Engine.
func (e *Engine) Image() string {
	e.imageOnce.Do(func() { e.image = e.BuildImage() })
	if e.image == "" {
		e.t.FailNow() // BuildImage failed in the Do above
	}
	return e.image
}

// Run creates and starts a container (see ContainerSpec) and removes it,
// forcibly, when the test ends.
func (e *Engine) Run(spec ContainerSpec) *Container {
	e.t.Helper()
	if spec.Image == "" {
		spec.Image = e.Image()
	}
	c, err := e.run(e.t.Context(), spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TryRun is Run that returns the error instead of failing the test (for
// starts racing an engine that is going away). A container it created
// is removed when the test ends, even if starting it failed.
func (e *Engine) TryRun(ctx context.Context, spec ContainerSpec) (*Container, error) {
	if spec.Image == "" {
		spec.Image = e.Image()
	}
	return e.run(ctx, spec)
}

// RunMany runs the containers of specs with at most parallel of them
// being created at once, and returns them in the order of specs. Every
// one made is removed when the test ends.
func (e *Engine) RunMany(specs []ContainerSpec, parallel int) []*Container {
	e.t.Helper()
	image := e.Image()
	out := make([]*Container, len(specs))
	g, ctx := errgroup.WithContext(e.t.Context())
	g.SetLimit(max(parallel, 1))
	for i, spec := range specs {
		if spec.Image == "" {
			spec.Image = image
		}
		g.Go(func() error {
			c, err := e.run(ctx, spec)
			out[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// RemoveMany force-removes containers, at most parallel at once.
func (e *Engine) RemoveMany(cs []*Container, parallel int) {
	e.t.Helper()
	g, ctx := errgroup.WithContext(e.t.Context())
	g.SetLimit(max(parallel, 1))
	for _, c := range cs {
		g.Go(func() error { return c.remove(ctx) })
	}
	if err := g.Wait(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *Engine) run(ctx context.Context, spec ContainerSpec) (*Container, error) {
	name := e.Name(spec.Name)
	cfg, host, net, err := e.containerConfig(spec)
	if err != nil {
		return nil, fmt.Errorf("dockertest: container %s: %w", name, err)
	}
	res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name, Config: cfg, HostConfig: host, NetworkingConfig: net,
	})
	if err != nil {
		return nil, fmt.Errorf("dockertest: create container %s: %w", name, err)
	}
	c := &Container{ID: res.ID, Name: name, e: e}
	e.t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := c.remove(ctx); err != nil {
			e.t.Errorf("dockertest: cleanup: %v", err)
		}
	})
	for _, n := range spec.Networks {
		if _, err := e.Client.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: res.ID}); err != nil {
			return c, fmt.Errorf("dockertest: connect %s to network %s: %w", name, n, err)
		}
	}
	if spec.NoStart {
		return c, nil
	}
	if _, err := e.Client.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return c, fmt.Errorf("dockertest: start container %s: %w", name, err)
	}
	return c, nil
}

func (e *Engine) containerConfig(spec ContainerSpec) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	var args []string
	exposed := network.PortSet{}
	join := func(ports []int, proto string) string {
		var s []string
		for _, p := range ports {
			s = append(s, strconv.Itoa(p))
			exposed[network.MustParsePort(strconv.Itoa(p)+"/"+proto)] = struct{}{}
		}
		return strings.Join(s, ",")
	}
	if len(spec.TCP) > 0 {
		args = append(args, "-tcp", join(spec.TCP, "tcp"))
	}
	if len(spec.UDP) > 0 {
		args = append(args, "-udp", join(spec.UDP, "udp"))
	}
	for _, p := range spec.Expose {
		port, err := network.ParsePort(p)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("Expose %q: %w", p, err)
		}
		exposed[port] = struct{}{}
	}
	if spec.TermCode != 0 {
		args = append(args, "-term-code", strconv.Itoa(spec.TermCode))
	}
	if spec.TermDelay > 0 {
		args = append(args, "-term-delay", spec.TermDelay.String())
	}
	if spec.Unhealthy {
		args = append(args, "-unhealthy")
	}
	stop := spec.StopTimeout
	if stop == 0 {
		stop = 5
	}
	cfg := &container.Config{
		Image:        spec.Image,
		Cmd:          args,
		Env:          slices.Clone(spec.Env),
		Labels:       e.labels(spec.Labels),
		Hostname:     spec.Hostname,
		ExposedPorts: exposed,
		StopTimeout:  &stop,
	}
	if spec.Healthcheck {
		cfg.Healthcheck = healthConfig(spec.HealthInterval)
	}
	host := &container.HostConfig{NetworkMode: container.NetworkMode(spec.Network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyMode(spec.Restart)}}
	if spec.Publish && len(exposed) > 0 {
		ip := spec.PublishIP
		if ip == "" {
			ip = "127.0.0.1"
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("PublishIP %q: %w", ip, err)
		}
		host.PortBindings = network.PortMap{}
		for _, p := range slices.SortedFunc(maps.Keys(exposed), func(a, b network.Port) int { return strings.Compare(a.String(), b.String()) }) {
			host.PortBindings[p] = []network.PortBinding{{HostIP: addr}}
		}
	}
	return cfg, host, nil, nil
}

// healthConfig is a HEALTHCHECK that runs the testserver's probe.
func healthConfig(interval time.Duration) *container.HealthConfig {
	if interval == 0 {
		interval = 300 * time.Millisecond
	}
	return &container.HealthConfig{
		Test:     []string{"CMD", ServerPath, "-probe"},
		Interval: interval,
		Timeout:  5 * time.Second,
		Retries:  1,
	}
}

// Inspect returns docker inspect of the container.
func (c *Container) Inspect() container.InspectResponse {
	c.e.t.Helper()
	res, err := c.e.Client.ContainerInspect(c.e.t.Context(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		c.e.t.Fatalf("dockertest: inspect %s: %v", c.Name, err)
	}
	return res.Container
}

// HostPort returns the host address (ip:port) a port ("80/tcp") is
// published on.
func (c *Container) HostPort(port string) string {
	c.e.t.Helper()
	in := c.Inspect()
	for p, bs := range in.NetworkSettings.Ports {
		if p.String() == port && len(bs) > 0 {
			return netip.AddrPortFrom(bs[0].HostIP, mustAtoi(bs[0].HostPort)).String()
		}
	}
	c.e.t.Fatalf("dockertest: %s has no published port %s (ports: %v)", c.Name, port, in.NetworkSettings.Ports)
	return ""
}

func mustAtoi(s string) uint16 {
	n, _ := strconv.ParseUint(s, 10, 16)
	return uint16(n)
}

// IP returns the container's address on a network ("" is the first).
func (c *Container) IP(networkName string) string {
	c.e.t.Helper()
	in := c.Inspect()
	for name, n := range in.NetworkSettings.Networks {
		if (networkName == "" || name == networkName) && n.IPAddress.IsValid() {
			return n.IPAddress.String()
		}
	}
	c.e.t.Fatalf("dockertest: %s has no address on network %q", c.Name, networkName)
	return ""
}

// Start starts the (created or stopped) container.
func (c *Container) Start() {
	c.e.t.Helper()
	if _, err := c.e.Client.ContainerStart(c.e.t.Context(), c.ID, client.ContainerStartOptions{}); err != nil {
		c.e.t.Fatalf("dockertest: start %s: %v", c.Name, err)
	}
}

// Stop is docker stop: SIGTERM, then SIGKILL after timeout seconds
// (negative: the container's own StopTimeout).
func (c *Container) Stop(timeout int) {
	c.e.t.Helper()
	opts := client.ContainerStopOptions{}
	if timeout >= 0 {
		opts.Timeout = &timeout
	}
	if _, err := c.e.Client.ContainerStop(c.e.t.Context(), c.ID, opts); err != nil {
		c.e.t.Fatalf("dockertest: stop %s: %v", c.Name, err)
	}
}

// Kill is docker kill -s signal ("" is SIGKILL).
func (c *Container) Kill(signal string) {
	c.e.t.Helper()
	if _, err := c.e.Client.ContainerKill(c.e.t.Context(), c.ID, client.ContainerKillOptions{Signal: signal}); err != nil {
		c.e.t.Fatalf("dockertest: kill %s: %v", c.Name, err)
	}
}

// Remove is docker rm -f.
func (c *Container) Remove() {
	c.e.t.Helper()
	if err := c.remove(c.e.t.Context()); err != nil {
		c.e.t.Fatal(err)
	}
}

func (c *Container) remove(ctx context.Context) error {
	_, err := c.e.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("dockertest: remove %s: %w", c.Name, err)
	}
	return nil
}

// Exec runs the testserver binary in the container with args (docker
// exec) and returns its exit code.
func (c *Container) Exec(args ...string) int {
	c.e.t.Helper()
	ctx := c.e.t.Context()
	ex, err := c.e.Client.ExecCreate(ctx, c.ID, client.ExecCreateOptions{Cmd: append([]string{ServerPath}, args...)})
	if err != nil {
		c.e.t.Fatalf("dockertest: exec %v in %s: %v", args, c.Name, err)
	}
	if _, err := c.e.Client.ExecStart(ctx, ex.ID, client.ExecStartOptions{Detach: true}); err != nil {
		c.e.t.Fatalf("dockertest: exec %v in %s: %v", args, c.Name, err)
	}
	code := -1
	WaitFor(c.e.t, 30*time.Second, fmt.Sprintf("exec %v in %s to finish", args, c.Name), func() (bool, string) {
		in, err := c.e.Client.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		code = in.ExitCode
		return !in.Running, fmt.Sprintf("running=%v exit=%d", in.Running, in.ExitCode)
	})
	return code
}

// SetHealthy makes the server's /health answer 200 (true) or 500, which
// its HEALTHCHECK reports on the next probe.
func (c *Container) SetHealthy(ok bool) {
	c.e.t.Helper()
	set := "fail"
	if ok {
		set = "ok"
	}
	// The probe's own exit code says whether /health is now failing.
	want := map[bool]int{true: 0, false: 1}[ok]
	if code := c.Exec("-get", "/health?set="+set); code != want {
		c.e.t.Fatalf("dockertest: set health of %s to %s: exec exited %d, want %d", c.Name, set, code, want)
	}
}

// Exit makes the server process exit on its own with code: a crash, a
// "die" event with no stop or kill before it. It returns once the
// container is no longer running.
func (c *Container) Exit(code int) {
	c.e.t.Helper()
	ctx := c.e.t.Context()
	ex, err := c.e.Client.ExecCreate(ctx, c.ID, client.ExecCreateOptions{Cmd: []string{ServerPath, "-get", "/exit?code=" + strconv.Itoa(code)}})
	if err != nil {
		c.e.t.Fatalf("dockertest: exit %s: %v", c.Name, err)
	}
	if _, err := c.e.Client.ExecStart(ctx, ex.ID, client.ExecStartOptions{Detach: true}); err != nil {
		c.e.t.Fatalf("dockertest: exit %s: %v", c.Name, err)
	}
	c.WaitExited()
}

// WaitExited waits until the container is not running and returns its
// exit code.
func (c *Container) WaitExited() int {
	c.e.t.Helper()
	var code int
	WaitFor(c.e.t, 30*time.Second, c.Name+" to exit", func() (bool, string) {
		in, err := c.e.Client.ContainerInspect(c.e.t.Context(), c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		code = in.Container.State.ExitCode
		return !in.Container.State.Running, fmt.Sprintf("status=%s exit=%d", in.Container.State.Status, code)
	})
	return code
}

// WaitHealth waits until the container's health status is status
// ("healthy", "unhealthy", "starting").
func (c *Container) WaitHealth(status string) {
	c.e.t.Helper()
	WaitFor(c.e.t, 30*time.Second, c.Name+" to be "+status, func() (bool, string) {
		in, err := c.e.Client.ContainerInspect(c.e.t.Context(), c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		if in.Container.State.Health == nil {
			return false, "no health state"
		}
		return string(in.Container.State.Health.Status) == status, string(in.Container.State.Health.Status)
	})
}

// Running lists the running containers this test made (docker ps
// --filter label=...), by name.
func (e *Engine) Running() []string {
	e.t.Helper()
	f := make(client.Filters).Add("label", LabelRun+"="+e.RunID).Add("label", LabelTest+"="+e.t.Name())
	cs, err := e.Client.ContainerList(e.t.Context(), client.ContainerListOptions{Filters: f})
	if err != nil {
		e.t.Fatalf("dockertest: docker ps: %v", err)
	}
	var names []string
	for _, c := range cs.Items {
		if len(c.Names) > 0 {
			names = append(names, strings.TrimPrefix(c.Names[0], "/"))
		}
	}
	slices.Sort(names)
	return names
}

// isNotFound reports an object that is gone. A Swarm network being
// removed is still listed for a moment, and removing it then fails with
// a "not found" that is not typed as one.
func isNotFound(err error) bool {
	return cerrdefs.IsNotFound(err) || strings.Contains(err.Error(), "not found")
}

// imageState is the Engine's lazily built image.
type imageState struct {
	imageOnce sync.Once
	image     string
}

// StartTimed starts the created container and returns the time of the
// engine's "start" event for it: the moment anything watching the engine
// can know it runs (the reference point of start-to-visible latencies).
func (c *Container) StartTimed() time.Time {
	c.e.t.Helper()
	ctx, cancel := context.WithTimeout(c.e.t.Context(), time.Minute)
	defer cancel()
	// Since: the engine replays what happened from just before the start,
	// so it does not matter when the subscription is in place.
	since := time.Now().Add(-time.Second)
	ev := c.e.Client.Events(ctx, client.EventsListOptions{
		Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: make(client.Filters).
			Add("type", "container").Add("event", "start").Add("container", c.ID),
	})
	c.Start()
	for {
		select {
		case m := <-ev.Messages:
			if m.Actor.ID == c.ID {
				return time.Unix(0, m.TimeNano)
			}
		case err := <-ev.Err:
			c.e.t.Fatalf("dockertest: docker events for %s: %v", c.Name, err)
		}
	}
}
