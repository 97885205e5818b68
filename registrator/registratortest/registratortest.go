// Package registratortest has fakes for registrator's two boundaries: an
// Engine whose containers and event stream a test drives (no Docker), and
// an in-memory Registry that records what it was asked as text and lets a
// test wait for a state with a deadline. registrator's own tests, its
// benchmark and the cmd/registrator tests use them. It imports only
// registrator.
package registratortest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator"
)

// Engine is a registrator.Engine whose containers and events the test
// drives. Events go to the current subscription in the order sent.
type Engine struct {
	mu         sync.Mutex
	containers map[string]*registrator.Container
	services   map[string]map[string]string // swarm service ID -> labels
	stream     *stream
	subscribed chan struct{}
	down       bool // Events and ContainerList fail while down
	failLists  int
	inspects   int
}

type stream struct {
	c    chan registrator.Event
	err  error
	once sync.Once
}

func (s *stream) C() <-chan registrator.Event { return s.c }
func (s *stream) Err() error                  { return s.err }

func (s *stream) end(err error) {
	s.once.Do(func() { s.err = err; close(s.c) })
}

// StreamBuffer is how many events a subscription holds before Emit
// blocks (the engine's socket buffer, in effect).
const StreamBuffer = 1 << 16

// NewEngine returns an engine with no containers.
func NewEngine() *Engine {
	return &Engine{containers: map[string]*registrator.Container{}, services: map[string]map[string]string{},
		subscribed: make(chan struct{}, 1000)}
}

// Events subscribes; Subscribed receives a value each time.
func (e *Engine) Events(ctx context.Context) (registrator.EventStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return nil, fmt.Errorf("dial unix /var/run/docker.sock: connect: connection refused")
	}
	s := &stream{c: make(chan registrator.Event, StreamBuffer)}
	e.stream = s
	context.AfterFunc(ctx, func() { s.end(ctx.Err()) })
	e.subscribed <- struct{}{}
	return s, nil
}

// Subscribed receives a value for each subscription made.
func (e *Engine) Subscribed() <-chan struct{} { return e.subscribed }

// ContainerList lists every container ID.
func (e *Engine) ContainerList(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down || e.failLists > 0 {
		e.failLists = max(0, e.failLists-1)
		return nil, fmt.Errorf("engine down")
	}
	return slices.Sorted(maps.Keys(e.containers)), nil
}

// ContainerInspect returns a copy of the container.
func (e *Engine) ContainerInspect(ctx context.Context, id string) (*registrator.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inspects++
	c, ok := e.containers[id]
	if !ok {
		return nil, fmt.Errorf("inspect %s: %w", id, registrator.ErrNotFound)
	}
	cp := *c
	return &cp, nil
}

// Inspects is how many ContainerInspect calls were made.
func (e *Engine) Inspects() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inspects
}

// ServiceLabels returns the labels SetServiceLabels gave.
func (e *Engine) ServiceLabels(ctx context.Context, id string) (map[string]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.services[id]
	if !ok {
		return nil, fmt.Errorf("service %s: %w", id, registrator.ErrNotFound)
	}
	return l, nil
}

// SetServiceLabels sets a Swarm service's spec labels.
func (e *Engine) SetServiceLabels(serviceID string, labels map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.services[serviceID] = labels
}

// Hostname is "fakehost".
func (e *Engine) Hostname(ctx context.Context) (string, error) { return "fakehost", nil }

// Put stores c (by ID) without sending events, as if it changed while
// nobody listened.
func (e *Engine) Put(c *registrator.Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers[c.ID] = c
}

// Delete removes a container without sending events.
func (e *Engine) Delete(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.containers, id)
}

// Set stores c, then sends the actions for it, in order.
func (e *Engine) Set(c *registrator.Container, actions ...string) {
	e.Put(c)
	e.Emit(c.ID, nil, actions...)
}

// Remove deletes the container, then sends the actions.
func (e *Engine) Remove(id string, actions ...string) {
	e.Delete(id)
	e.Emit(id, nil, actions...)
}

// Emit sends events for container id to the current subscription (none:
// dropped, as the engine would).
func (e *Engine) Emit(id string, attrs map[string]string, actions ...string) {
	e.mu.Lock()
	s := e.stream
	e.mu.Unlock()
	if s == nil {
		return
	}
	for _, a := range actions {
		s.c <- registrator.Event{Action: a, ID: id, Attrs: attrs}
	}
}

// Restart ends the subscription as an engine restart does; the engine
// stays down until Up.
func (e *Engine) Restart() {
	e.mu.Lock()
	e.down = true
	s := e.stream
	e.stream = nil
	e.mu.Unlock()
	if s != nil {
		s.end(fmt.Errorf("unexpected EOF"))
	}
}

// FailLists makes the next n ContainerList calls fail.
func (e *Engine) FailLists(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failLists = n
}

// Up ends Restart's outage.
func (e *Engine) Up() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = false
}

// Registry is an in-memory registrator.Registry. It records each write as
// a line of text (Transcript) and wakes WaitIDs on every change.
type Registry struct {
	mu       sync.Mutex
	services map[string]*registrator.Service
	status   map[string]registrator.Status
	log      []string
	changed  chan struct{}
	pingErr  error
	pings    int
	failNext int
	quiet    bool
	writes   int
	delay    time.Duration
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{services: map[string]*registrator.Service{}, status: map[string]registrator.Status{}, changed: make(chan struct{})}
}

// Quiet stops the transcript (for bursts).
func (f *Registry) Quiet() { f.mu.Lock(); f.quiet = true; f.mu.Unlock() }

// FailRegisters makes the next n Register calls fail.
func (f *Registry) FailRegisters(n int) { f.mu.Lock(); f.failNext = n; f.mu.Unlock() }

// SetPingErr makes Ping fail with err (nil: succeed).
func (f *Registry) SetPingErr(err error) { f.mu.Lock(); f.pingErr = err; f.mu.Unlock() }

// SetDelay makes every Register, Deregister and Refresh take d (outside
// the registry's lock, so concurrent calls overlap as on a network).
func (f *Registry) SetDelay(d time.Duration) { f.mu.Lock(); f.delay = d; f.mu.Unlock() }

func (f *Registry) wait() {
	f.mu.Lock()
	d := f.delay
	f.mu.Unlock()
	if d > 0 {
		time.Sleep(d) // stands for the network round trip
	}
}

// Pings is how many times Ping was called.
func (f *Registry) Pings() int { f.mu.Lock(); defer f.mu.Unlock(); return f.pings }

// Writes is how many Register, Deregister and Refresh calls succeeded.
func (f *Registry) Writes() int { f.mu.Lock(); defer f.mu.Unlock(); return f.writes }

func (f *Registry) note(format string, a ...any) {
	f.writes++
	if !f.quiet {
		f.log = append(f.log, fmt.Sprintf(format, a...))
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Register stores a copy of s.
func (f *Registry) Register(ctx context.Context, s *registrator.Service) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		return fmt.Errorf("connection refused")
	}
	cp := *s
	f.services[s.ID] = &cp
	f.status[s.ID] = s.Status
	if s.Status != registrator.StatusNone {
		f.note("register %s %s:%d %s", s.ID, s.Address, s.Port, s.Status)
	} else {
		f.note("register %s %s:%d", s.ID, s.Address, s.Port)
	}
	return nil
}

// Deregister removes s.ID.
func (f *Registry) Deregister(ctx context.Context, s *registrator.Service) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.services, s.ID)
	delete(f.status, s.ID)
	f.note("deregister %s", s.ID)
	return nil
}

// Refresh records s.Status; unknown services are an error.
func (f *Registry) Refresh(ctx context.Context, s *registrator.Service) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.services[s.ID]; !ok {
		return fmt.Errorf("unknown service %s", s.ID)
	}
	f.status[s.ID] = s.Status
	f.note("refresh %s %s", s.ID, s.Status)
	return nil
}

// Services returns copies of every registration.
func (f *Registry) Services(ctx context.Context) ([]*registrator.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*registrator.Service
	for _, s := range f.services {
		cp := *s
		out = append(out, &cp)
	}
	return out, nil
}

// Ping fails with SetPingErr's error.
func (f *Registry) Ping(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	return f.pingErr
}

// Get returns a copy of registration id.
func (f *Registry) Get(id string) (*registrator.Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[id]
	if !ok {
		return nil, false
	}
	cp := *s
	return &cp, true
}

// Len is how many services are registered.
func (f *Registry) Len() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.services) }

// LenLocked is Len for WaitFor conditions, which run with the lock held.
func (f *Registry) LenLocked() int { return len(f.services) }

// IDs is the sorted registered IDs, space separated, each with
// "=<status>" when it has one.
func (f *Registry) IDs() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.idsLocked()
}

func (f *Registry) idsLocked() string {
	var out []string
	for id := range f.services {
		if st := f.status[id]; st != registrator.StatusNone {
			id += "=" + string(st)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// Transcript is every write so far, one per line.
func (f *Registry) Transcript() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "\n")
}

// WaitIDs blocks until IDs() == want, or fails the test after 30s (fake
// time under testing/synctest) with the last state seen.
func (f *Registry) WaitIDs(t testing.TB, want string) {
	t.Helper()
	f.WaitFor(t, want, func() bool { return f.idsLocked() == want })
}

// WaitFor blocks until cond (called with the registry locked) holds, or
// fails the test after 30s, describing the wait as what.
func (f *Registry) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		ch, ok := f.changed, cond()
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("registry = %q, want %s\ntranscript:\n%s", f.IDs(), what, f.Transcript())
		}
	}
}

// Start runs a registrator made of cfg, eng and reg until the returned
// stop is called or the test ends. stop may be called more than once; it
// waits up to 30 s for Run, reports a Run error or a hang as a test error,
// then closes the engine's client with closeEngine (nil for none).
func Start(t testing.TB, cfg registrator.Config, eng registrator.Engine, reg registrator.Registry, closeEngine func() error) (stop func()) {
	t.Helper()
	r, err := registrator.New(cfg, eng, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("registrator.Run returned %v, want nil on a clean stop", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("registrator.Run still running 30s after its context was cancelled")
		}
		if closeEngine != nil {
			_ = closeEngine() // a client's idle connections; nothing to act on
		}
	})
	t.Cleanup(stop)
	return stop
}
