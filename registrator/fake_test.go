package registrator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine is an Engine whose containers and event stream the test
// drives. Streams are unbuffered beyond a large channel so the test can
// queue bursts; break_ ends the current stream like an engine restart.
type fakeEngine struct {
	mu         sync.Mutex
	containers map[string]*Container
	services   map[string]map[string]string // swarm service ID -> labels
	stream     *fakeStream
	subscribed chan struct{} // receives one value per subscription
	down       bool          // Events fails while down
	inspects   int
}

type fakeStream struct {
	c    chan Event
	err  error
	once sync.Once
}

func (s *fakeStream) C() <-chan Event { return s.c }
func (s *fakeStream) Err() error      { return s.err }

func newFakeEngine() *fakeEngine {
	return &fakeEngine{containers: map[string]*Container{}, services: map[string]map[string]string{},
		subscribed: make(chan struct{}, 100)}
}

func (e *fakeEngine) Events(ctx context.Context) (EventStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return nil, fmt.Errorf("dial unix /var/run/docker.sock: connection refused")
	}
	s := &fakeStream{c: make(chan Event, 100000)}
	e.stream = s
	context.AfterFunc(ctx, func() { s.end(ctx.Err()) })
	e.subscribed <- struct{}{}
	return s, nil
}

func (s *fakeStream) end(err error) {
	s.once.Do(func() { s.err = err; close(s.c) })
}

func (e *fakeEngine) ContainerList(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return nil, fmt.Errorf("engine down")
	}
	return slices.Sorted(maps.Keys(e.containers)), nil
}

func (e *fakeEngine) ContainerInspect(ctx context.Context, id string) (*Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inspects++
	c, ok := e.containers[id]
	if !ok {
		return nil, fmt.Errorf("inspect %s: %w", id, ErrNotFound)
	}
	cp := *c
	return &cp, nil
}

func (e *fakeEngine) ServiceLabels(ctx context.Context, id string) (map[string]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.services[id]
	if !ok {
		return nil, ErrNotFound
	}
	return l, nil
}

func (e *fakeEngine) Hostname(ctx context.Context) (string, error) { return "host1", nil }

// set replaces container c (by ID) and sends the events, in order.
func (e *fakeEngine) set(c *Container, actions ...string) {
	e.mu.Lock()
	e.containers[c.ID] = c
	e.mu.Unlock()
	e.emit(c.ID, nil, actions...)
}

// remove deletes the container and sends the events.
func (e *fakeEngine) remove(id string, actions ...string) {
	e.mu.Lock()
	delete(e.containers, id)
	e.mu.Unlock()
	e.emit(id, nil, actions...)
}

func (e *fakeEngine) emit(id string, attrs map[string]string, actions ...string) {
	e.mu.Lock()
	s := e.stream
	e.mu.Unlock()
	if s == nil {
		return
	}
	for _, a := range actions {
		s.c <- Event{Action: a, ID: id, Attrs: attrs}
	}
}

// restart ends the stream as an engine restart does; the engine stays
// down (Events fails) until up.
func (e *fakeEngine) restart() {
	e.mu.Lock()
	e.down = true
	s := e.stream
	e.stream = nil
	e.mu.Unlock()
	s.end(fmt.Errorf("unexpected EOF"))
}

func (e *fakeEngine) up() {
	e.mu.Lock()
	e.down = false
	e.mu.Unlock()
}

// fakeRegistry is a Registry in memory that records what it was asked
// as text and wakes waiters on every change.
type fakeRegistry struct {
	mu       sync.Mutex
	services map[string]*Service
	status   map[string]Status
	log      []string
	changed  chan struct{}
	pingErr  error
	pings    int
	failNext int // fail this many Register calls
	quiet    bool
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{services: map[string]*Service{}, status: map[string]Status{}, changed: make(chan struct{})}
}

func (f *fakeRegistry) note(format string, a ...any) {
	if !f.quiet {
		f.log = append(f.log, fmt.Sprintf(format, a...))
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeRegistry) Register(ctx context.Context, s *Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		f.note("register %s failed", s.ID)
		return fmt.Errorf("connection refused")
	}
	cp := *s
	f.services[s.ID] = &cp
	f.status[s.ID] = s.Status
	if s.Status != StatusNone {
		f.note("register %s %s:%d %s", s.ID, s.Address, s.Port, s.Status)
	} else {
		f.note("register %s %s:%d", s.ID, s.Address, s.Port)
	}
	return nil
}

func (f *fakeRegistry) Deregister(ctx context.Context, s *Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.services, s.ID)
	delete(f.status, s.ID)
	f.note("deregister %s", s.ID)
	return nil
}

func (f *fakeRegistry) Refresh(ctx context.Context, s *Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.services[s.ID]; !ok {
		return fmt.Errorf("unknown service %s", s.ID)
	}
	f.status[s.ID] = s.Status
	f.note("refresh %s %s", s.ID, s.Status)
	return nil
}

func (f *fakeRegistry) Services(ctx context.Context) ([]*Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Service
	for _, s := range f.services {
		cp := *s
		out = append(out, &cp)
	}
	return out, nil
}

func (f *fakeRegistry) Ping(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	return f.pingErr
}

// ids is the sorted registered IDs, with ":<status>" for those with one.
func (f *fakeRegistry) ids() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.services {
		if st := f.status[id]; st != StatusNone {
			id += "=" + string(st)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func (f *fakeRegistry) transcript() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "\n")
}

// waitIDs blocks until ids() is want, or fails after the deadline with
// the last state seen.
func (f *fakeRegistry) waitIDs(t testing.TB, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if got := f.ids(); got == want {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("registry = %q, want %q\ntranscript:\n%s", f.ids(), want, f.transcript())
		}
	}
}
