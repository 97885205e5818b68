package dockertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/moby/moby/client"
)

// Labels every object the harness creates carries.
const (
	// LabelRun is cairn.test=t<pid>: which test process made it.
	LabelRun = "cairn.test"
	// LabelTest is the name of the test that made it.
	LabelTest = "cairn.test.name"
)

// cleanupTimeout bounds each cleanup step; cleanups run after the test's
// own context is cancelled.
const cleanupTimeout = 2 * time.Minute

// Engine is a test's handle on the Docker engine. Everything made through
// it is named with Prefix, labelled, and removed when the test ends.
type Engine struct {
	// Client is the engine's own Go client (API version negotiated).
	Client *client.Client
	// Host is the engine address the client uses, as DOCKER_HOST spells
	// it (unix:///var/run/docker.sock by default).
	Host string
	// RunID is the value of the cairn.test label: t<pid>.
	RunID string
	// Prefix starts the name of every object this test makes:
	// cairn-t<pid>-<test name>-.
	Prefix string

	t   testing.TB
	seq atomic.Int64
	imageState
}

// NeedDocker connects to the engine named by DOCKER_HOST (or the usual
// socket) and pings it. With no engine, the test is skipped, or fails
// under CI=true. It sweeps objects that crashed earlier runs left behind
// (their process is gone), and registers a final sweep of everything this
// test made.
func NeedDocker(t testing.TB) *Engine {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err != nil {
			c.Close()
		}
	}
	systemtest.Need(t, "a Docker engine (DOCKER_HOST or "+client.DefaultDockerHost+")", err)
	return newEngine(t, c)
}

// newEngine is the Engine over client c, which answers pings: it sweeps
// what crashed earlier runs left and what the test leaves.
func newEngine(t testing.TB, c *client.Client) *Engine {
	t.Helper()
	e := &Engine{
		Client: c,
		Host:   c.DaemonHost(),
		RunID:  fmt.Sprintf("t%d", os.Getpid()),
		t:      t,
	}
	e.Prefix = fmt.Sprintf("cairn-%s-%s-", e.RunID, shortName(t.Name()))
	t.Cleanup(func() { c.Close() })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := e.sweep(ctx, func(labels map[string]string) bool {
			return labels[LabelRun] == e.RunID && labels[LabelTest] == t.Name()
		}); err != nil {
			t.Errorf("dockertest: removing what %s left behind: %v", t.Name(), err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), cleanupTimeout)
	defer cancel()
	if err := e.sweep(ctx, stale); err != nil {
		t.Logf("dockertest: sweeping objects of earlier runs: %v", err)
	}
	return e
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// shortName makes a test name usable in container names (which also
// become hostnames in some places): safe characters, at most 40 of them.
func shortName(name string) string {
	s := strings.Trim(unsafeName.ReplaceAllString(name, "-"), "-.")
	s = strings.TrimPrefix(s, "TestSystem")
	if s == "" {
		s = "test"
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.ToLower(s)
}

// Name returns a fresh object name: Prefix + what, or Prefix + n<seq>
// when what is empty.
func (e *Engine) Name(what string) string {
	n := e.seq.Add(1)
	if what == "" {
		return e.Prefix + "n" + strconv.FormatInt(n, 10)
	}
	return e.Prefix + what
}

// labels returns the harness labels merged over extra.
func (e *Engine) labels(extra map[string]string) map[string]string {
	l := make(map[string]string, len(extra)+2)
	for k, v := range extra {
		l[k] = v
	}
	l[LabelRun] = e.RunID
	l[LabelTest] = e.t.Name()
	return l
}

// cleanupCtx is the context cleanups run under.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cleanupTimeout)
}

// stale reports whether an object labelled by the harness belongs to a
// test process that no longer exists.
func stale(labels map[string]string) bool {
	run, ok := labels[LabelRun]
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(run, "t"))
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// sweep removes the harness's services, containers and networks whose
// labels match: services first (their tasks go with them), networks last.
func (e *Engine) sweep(ctx context.Context, match func(map[string]string) bool) error {
	var errs []error
	f := make(client.Filters).Add("label", LabelRun)
	if info, err := e.Client.Info(ctx, client.InfoOptions{}); err == nil && info.Info.Swarm.ControlAvailable {
		svcs, err := e.Client.ServiceList(ctx, client.ServiceListOptions{Filters: f})
		if err != nil {
			errs = append(errs, fmt.Errorf("list services: %w", err))
		}
		for _, s := range svcs.Items {
			if match(s.Spec.Labels) {
				if _, err := e.Client.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil && !isNotFound(err) {
					errs = append(errs, fmt.Errorf("remove service %s: %w", s.Spec.Name, err))
				}
			}
		}
	}
	cs, err := e.Client.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range cs.Items {
		if match(c.Labels) {
			if _, err := e.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove container %v: %w", c.Names, err))
			}
		}
	}
	nets, err := e.Client.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range nets.Items {
		if match(n.Labels) {
			if _, err := e.Client.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
