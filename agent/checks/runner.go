package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"
)

// Sink is what a Runner needs from its user (agent/catalog): somewhere to
// report results. The Runner calls it; it never calls the Runner back
// except as allowed below.
type Sink interface {
	// UpdateCheck reports that check id now has this status and output.
	// It is called when either changes, not on every identical result, and
	// never for the state a check starts in (Definition.Status, empty
	// output), which the caller already knows from the Definition it
	// added.
	//
	// It is called from the check's own goroutine (started by Run) after a
	// run or a TTL expiry, and by Runner.TTL in its caller's goroutine
	// before TTL returns, so that a client that passes a TTL check and
	// then reads the check sees the new status. Calls for one check never
	// overlap and arrive in the order the changes happened, also across a
	// replacing Add; calls for different checks may run concurrently.
	//
	// It must not block for long: it holds up that check. It may call
	// Runner.Add and Runner.Remove but not Runner.TTL for the same check
	// (that deadlocks), and nobody may hold a lock that UpdateCheck takes
	// while calling Runner.TTL. A call already under way when Remove
	// returns may still arrive: ignore ids you no longer know.
	UpdateCheck(id string, status Status, output string)

	// DeregisterService asks for serviceID to be deregistered because one
	// of its checks has been critical for longer than its
	// DeregisterCriticalServiceAfter. It is called once per critical spell
	// (again only if the check recovers and goes critical for that long
	// again), from the check's goroutine with no lock held; it may call
	// Add and Remove, and normally removes the service and its checks. It
	// must not block for long.
	DeregisterService(serviceID string)
}

// Config configures a Runner. Start from DefaultConfig; New validates.
// Zero values mean the defaults.
type Config struct {
	// Sink receives every change of a check's status or output. Required.
	Sink Sink
	// EnableScriptChecks (-enable-script-checks) allows script checks
	// (Definition.Args). Off by default: a script check runs any program
	// that whoever can register a check names.
	EnableScriptChecks bool
	// DisableStagger runs each HTTP, TCP and script check as soon as it is
	// added (or Run starts) instead of after a random part of its
	// Interval. Consul staggers, so that an agent with many checks does
	// not run them all at once; tests and -dev want the first result now.
	DisableStagger bool
	// OutputMaxSize is how many bytes of output a check keeps; 0 means
	// BufSize (4 KiB), Consul's check_output_max_size.
	OutputMaxSize int
	// MinDeregisterAfter is the shortest DeregisterCriticalServiceAfter
	// honoured; a shorter one is raised to it with a warning. 0 means one
	// minute, Consul's check_deregister_interval_min, so that a service
	// is not deregistered over a blip.
	MinDeregisterAfter time.Duration
	// TLSClientConfig is the TLS configuration of https checks (the CA to
	// trust, a client certificate); nil means the host's roots. A check
	// with TLSSkipVerify uses a copy that verifies nothing.
	TLSClientConfig *tls.Config
	// DialContext opens the connections of HTTP and TCP checks; nil means
	// a net.Dialer. Tests pass one that returns net.Pipe connections, to
	// run checks inside a testing/synctest bubble.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// Docker runs the commands of Docker checks (DockerContainerID) in
	// their containers; nil makes every Docker check critical, saying so.
	Docker DockerExec
	// Logger receives one line per status change and a warning for each
	// Interval or DeregisterCriticalServiceAfter raised to its minimum;
	// nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: script checks off, staggered first
// runs, 4 KiB of output, deregistration after at least a minute. Set Sink.
func DefaultConfig() Config {
	return Config{OutputMaxSize: BufSize, MinDeregisterAfter: time.Minute}
}

// validate fills in zero values and checks every field, returning the
// completed copy.
func (c Config) validate() (Config, error) {
	if c.Sink == nil {
		return c, errors.New("checks: Config.Sink is nil; the runner needs somewhere to report check results (the catalog)")
	}
	if c.OutputMaxSize < 0 {
		return c, fmt.Errorf("checks: OutputMaxSize=%d is negative; use 0 for the default (%d bytes)", c.OutputMaxSize, BufSize)
	}
	if c.OutputMaxSize == 0 {
		c.OutputMaxSize = BufSize
	}
	if c.MinDeregisterAfter < 0 {
		return c, fmt.Errorf("checks: MinDeregisterAfter=%s is negative; use 0 for the default (1m)", c.MinDeregisterAfter)
	}
	if c.MinDeregisterAfter == 0 {
		c.MinDeregisterAfter = time.Minute
	}
	if c.DialContext == nil {
		c.DialContext = (&net.Dialer{}).DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Errors that Runner.TTL returns, for callers to branch on with errors.Is
// (agent/httpapi maps them to status codes).
var (
	// ErrUnknownCheck: no check has that ID (404 in Consul).
	ErrUnknownCheck = errors.New("unknown check ID")
	// ErrNotTTL: the check is not a TTL check, so nobody may set its
	// status; the agent runs it.
	ErrNotTTL = errors.New("does not have associated TTL")
	// ErrInvalidStatus: the status is not passing, warning or critical
	// (400 in Consul).
	ErrInvalidStatus = errors.New("invalid check status")
)

// Runner runs health checks and reports their results to a Sink. Its
// methods are safe for concurrent use.
type Runner struct {
	cfg Config
	log *slog.Logger
	// http carries HTTP checks; httpInsecure those with TLSSkipVerify.
	// Both disable keep-alives, as Consul does, so that a check always
	// opens a fresh connection: a pooled one could hide that the service
	// no longer accepts new ones.
	http, httpInsecure *http.Transport

	mu      sync.Mutex
	checks  map[string]*check // by ID
	running bool              // Run is running: added checks start at once
	runCtx  context.Context   // Run's, while running
	wg      sync.WaitGroup    // every check goroutine; Run waits for it
}

// New returns a Runner with no checks. It starts nothing; call Run.
func New(cfg Config) (*Runner, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Runner{
		cfg:          cfg,
		log:          cfg.Logger,
		http:         newTransport(cfg, false),
		httpInsecure: newTransport(cfg, true),
		checks:       make(map[string]*check),
	}, nil
}

// Add validates def (Definition.Validate) and adds the check, replacing
// one with the same ID. If Run is running the check starts at once,
// otherwise when Run starts. The check starts in def.Status (critical
// when empty) with def.Output (usually empty); the Sink hears only of
// changes from there.
//
// Adding a definition equal to the running one, but for Name and Notes,
// changes nothing: the check keeps running with its status and counters,
// so that a caller may re-add everything it wants (a resync) without
// resetting every check to critical. Any other difference replaces the
// check: the new one starts afresh, as in Consul.
//
// Add does not wait for a replaced check's run in progress, which is
// aborted; it may be called from Sink methods.
func (r *Runner) Add(def Definition) error {
	if err := def.Validate(r.cfg.EnableScriptChecks); err != nil {
		return err
	}
	def = def.clone()

	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.checks[def.ID]
	if old != nil && sameCheck(old.def, def) {
		return nil
	}
	c := r.newCheck(def, time.Now())
	if old != nil {
		// The new check reports under the old one's lock, so that a
		// report of the old one still under way reaches the Sink before
		// any of the new one's.
		c.mu = old.mu
		old.stop()
	}
	r.checks[def.ID] = c
	if r.running {
		r.startLocked(c)
	}
	return nil
}

// sameCheck reports whether a and b run the same check with the same
// initial state: everything but Name and Notes is equal.
func sameCheck(a, b Definition) bool {
	a.Name, a.Notes = "", ""
	b.Name, b.Notes = "", ""
	return reflect.DeepEqual(a, b)
}

// Remove stops and forgets check id; an unknown id is a no-op. A run in
// progress is aborted and not reported. Remove does not wait for
// anything, so it may be called from Sink methods.
func (r *Runner) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.checks[id]; c != nil {
		c.stop()
		delete(r.checks, id)
	}
}

// TTL sets the status and output of TTL check id and restarts its TTL:
// Consul's /v1/agent/check/pass, warn, fail and update. The output
// (Consul's "note") is cut to Config.OutputMaxSize bytes. If that changes
// the check's status or output, TTL calls Sink.UpdateCheck before it
// returns. It works whether or not Run is running; the TTL expires only
// while Run is.
//
// Errors: ErrInvalidStatus, ErrUnknownCheck and ErrNotTTL, wrapped in
// Consul's texts.
func (r *Runner) TTL(id string, status Status, output string) error {
	if !status.valid() {
		return fmt.Errorf("%w %q; want passing, warning or critical", ErrInvalidStatus, status)
	}
	output = truncateNote(output, r.cfg.OutputMaxSize)
	for {
		r.mu.Lock()
		c := r.checks[id]
		r.mu.Unlock()
		if c == nil {
			return fmt.Errorf("%w %q; ensure that the check ID is passed, not the check name", ErrUnknownCheck, id)
		}
		if c.kind != kindTTL {
			return fmt.Errorf("CheckID %q %w: it is %s check, which the agent runs itself every %s; only a TTL check's status can be set",
				id, ErrNotTTL, c.kind.described(), c.interval)
		}
		if r.setTTL(c, status, output) {
			return nil
		}
		// Removed or replaced since we looked it up: look again.
	}
}

// setTTL applies a TTL update to c, unless c was removed or replaced
// (then it returns false).
func (r *Runner) setTTL(c *check, status Status, output string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed.Load() {
		return false
	}
	c.lastNote = output
	c.ttlDeadline = time.Now().Add(c.def.TTL)
	r.setLocked(c, status, output)
	c.poke()
	return true
}

// Run runs every check until ctx ends, then stops them, waits for every
// goroutine it started and returns nil. Checks added while it runs start
// at once; checks can be added and removed before and after it too. Run
// may be called again after it returned; it returns an error if it is
// already running.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("checks: Run is already running; call it once, from the agent's errgroup")
	}
	r.running, r.runCtx = true, ctx
	for _, c := range r.checks {
		r.startLocked(c)
	}
	r.mu.Unlock()

	<-ctx.Done()

	r.mu.Lock()
	r.running, r.runCtx = false, nil
	for _, c := range r.checks {
		// Their goroutines end with ctx; forget the cancel funcs so that
		// the next Run starts them again.
		if c.cancel != nil {
			c.cancel()
			c.cancel = nil
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.http.CloseIdleConnections()
	r.httpInsecure.CloseIdleConnections()
	return nil
}

// startLocked starts c's goroutine, owned by Run through r.wg. r.mu is
// held.
func (r *Runner) startLocked(c *check) {
	ctx, cancel := context.WithCancel(r.runCtx)
	c.cancel = cancel
	r.wg.Go(func() { r.loop(ctx, c) })
}
