package checks

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// check is one added Definition and its state.
type check struct {
	def  Definition // as added; never changed
	kind kind
	// interval and timeout are def's, with the defaults and limits
	// applied; deregAfter likewise, 0 when the check never deregisters.
	interval, timeout, deregAfter time.Duration
	// transport carries an HTTP check's requests: the Runner's shared
	// one, or the check's own when it sets TLSServerName.
	transport *http.Transport

	// cancel stops the goroutine; set while it runs. Guarded by Runner.mu.
	cancel context.CancelFunc
	// removed is set, under Runner.mu, when the check is removed or
	// replaced; nothing is reported for it after that.
	removed atomic.Bool
	// wake tells the goroutine that TTL changed the state, so that it
	// rearms its timers. Capacity 1: a pending wake-up covers any number
	// of changes.
	wake chan struct{}

	// mu guards the state below and is held across Sink.UpdateCheck, so
	// that the Sink hears of a check's changes one at a time and in order.
	// A replacing check shares the replaced one's mu.
	mu *sync.Mutex
	// status and output are what the Sink was last told (or the initial
	// state).
	status Status
	output string
	// successes and failures count results in a row, for the thresholds.
	successes, failures int
	// criticalSince is when status last turned critical; zero when it is
	// not critical.
	criticalSince time.Time
	// deregistered: DeregisterService was called in this critical spell.
	deregistered bool
	// ttlDeadline is when a TTL check expires; zero once it has expired
	// (until the next update). lastNote is the last update's output.
	ttlDeadline time.Time
	lastNote    string
}

// newCheck returns the check for a validated def, in its initial state,
// as of now. It logs limits it applies. r.mu is held (only for the log
// order).
func (r *Runner) newCheck(def Definition, now time.Time) *check {
	c := &check{
		def:  def,
		kind: def.kind(),
		wake: make(chan struct{}, 1),
		mu:   new(sync.Mutex),
		// Consul's StatusHandler starts its counters at the thresholds,
		// so that the first result counts at once.
		successes: def.SuccessBeforePassing,
		failures:  def.FailuresBeforeCritical,
		status:    def.Status,
		output:    def.Output,
	}
	if c.status == "" {
		c.status = Critical
	}
	if c.status == Critical {
		c.criticalSince = now
	}
	if c.kind == kindTTL {
		c.ttlDeadline = now.Add(def.TTL)
	} else {
		c.interval = def.Interval
		if c.interval < MinInterval {
			r.log.Warn("check interval is below the minimum; using the minimum",
				"check", def.ID, "interval", def.Interval, "minimum", MinInterval)
			c.interval = MinInterval
		}
		c.timeout = def.Timeout
		if c.timeout == 0 {
			c.timeout = defaultTimeout
			if c.kind == kindScript || c.kind == kindDocker {
				c.timeout = defaultScriptTimeout
			}
		}
		c.timeout = min(c.timeout, c.interval)
	}
	if c.kind == kindHTTP {
		c.transport = r.httpTransport(def)
	}
	if def.ServiceID != "" && def.DeregisterCriticalServiceAfter > 0 {
		c.deregAfter = def.DeregisterCriticalServiceAfter
		if c.deregAfter < r.cfg.MinDeregisterAfter {
			r.log.Warn("check's DeregisterCriticalServiceAfter is below the minimum; using the minimum",
				"check", def.ID, "deregister_critical_service_after", def.DeregisterCriticalServiceAfter,
				"minimum", r.cfg.MinDeregisterAfter)
			c.deregAfter = r.cfg.MinDeregisterAfter
		}
	}
	return c
}

// stop marks c removed and ends its goroutine, if any. Runner.mu is held.
func (c *check) stop() {
	c.removed.Store(true)
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
}

// poke wakes c's goroutine; it never blocks.
func (c *check) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// loop is c's goroutine: it runs the check every interval (HTTP, TCP,
// script), expires its TTL (TTL) and deregisters its service when it has
// been critical too long (any kind), until ctx ends.
func (r *Runner) loop(ctx context.Context, c *check) {
	runT, ttlT, deregT := stoppedTimer(), stoppedTimer(), stoppedTimer()
	defer runT.Stop()
	defer ttlT.Stop()
	defer deregT.Stop()

	var nextRun time.Time // zero for a TTL check
	if c.kind != kindTTL {
		nextRun = time.Now()
		if !r.cfg.DisableStagger {
			// Consul's lib.RandomStagger: somewhere in the first interval.
			nextRun = nextRun.Add(rand.N(c.interval))
		}
	}
	for {
		c.mu.Lock()
		ttlAt, deregAt := c.ttlDeadline, c.deregDeadlineLocked()
		c.mu.Unlock()

		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-arm(runT, nextRun):
			status, output := r.probe(ctx, c)
			if ctx.Err() != nil {
				return // removed, replaced or stopped: not a result
			}
			r.result(c, status, output)
			nextRun = time.Now().Add(c.interval)
		case <-arm(ttlT, ttlAt):
			r.expire(c)
		case <-arm(deregT, deregAt):
			r.deregister(c)
		}
	}
}

// probe runs c once.
func (r *Runner) probe(ctx context.Context, c *check) (Status, string) {
	switch c.kind {
	case kindHTTP:
		return r.probeHTTP(ctx, c)
	case kindTCP:
		return r.probeTCP(ctx, c)
	case kindScript:
		return r.probeScript(ctx, c)
	case kindGRPC:
		return r.probeGRPC(ctx, c)
	case kindDocker:
		return r.probeDocker(ctx, c)
	}
	panic(fmt.Sprintf("checks: probe of a %v check", c.kind))
}

// result applies one run's result through the thresholds, as Consul's
// StatusHandler does: a passing or warning result counts as a success.
func (r *Runner) result(c *check, status Status, output string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed.Load() {
		return
	}
	if status == Passing || status == Warning {
		c.successes++
		c.failures = 0
		if c.successes < c.def.SuccessBeforePassing {
			r.log.Debug("check succeeded but has not reached its success threshold",
				"check", c.def.ID, "status", status, "successes", c.successes, "threshold", c.def.SuccessBeforePassing)
			return
		}
	} else {
		c.failures++
		c.successes = 0
		warnAt := c.def.FailuresBeforeWarning
		if warnAt == 0 {
			warnAt = c.def.FailuresBeforeCritical
		}
		switch {
		case c.failures >= c.def.FailuresBeforeCritical:
		case c.failures >= warnAt:
			status = Warning
		default:
			r.log.Debug("check failed but has not reached its failure threshold",
				"check", c.def.ID, "failures", c.failures,
				"warning_threshold", warnAt, "critical_threshold", c.def.FailuresBeforeCritical)
			return
		}
	}
	r.setLocked(c, status, output)
}

// expire turns a TTL check whose TTL has passed critical.
func (r *Runner) expire(c *check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed.Load() || c.ttlDeadline.IsZero() || time.Now().Before(c.ttlDeadline) {
		return // updated since the timer was armed
	}
	c.ttlDeadline = time.Time{}
	output := "TTL expired"
	if c.lastNote != "" {
		output += " (last output before timeout follows): " + c.lastNote
	}
	r.setLocked(c, Critical, output)
}

// deregister asks the Sink to deregister c's service if c has been
// critical for deregAfter.
func (r *Runner) deregister(c *check) {
	c.mu.Lock()
	at := c.deregDeadlineLocked()
	if c.removed.Load() || at.IsZero() || time.Now().Before(at) {
		c.mu.Unlock()
		return
	}
	c.deregistered = true
	since := c.criticalSince
	c.mu.Unlock()

	r.log.Warn("deregistering service: its check has been critical too long",
		"service", c.def.ServiceID, "check", c.def.ID,
		"critical_for", time.Since(since), "deregister_critical_service_after", c.deregAfter)
	r.cfg.Sink.DeregisterService(c.def.ServiceID)
}

// deregDeadlineLocked is when c's service is due to be deregistered, or
// zero if it is not. c.mu is held.
func (c *check) deregDeadlineLocked() time.Time {
	if c.deregAfter == 0 || c.status != Critical || c.deregistered {
		return time.Time{}
	}
	return c.criticalSince.Add(c.deregAfter)
}

// setLocked records c's new status and output and tells the Sink, if
// either changed. c.mu is held.
func (r *Runner) setLocked(c *check, status Status, output string) {
	if status == c.status && output == c.output {
		return
	}
	prev := c.status
	c.status, c.output = status, output
	if status != prev {
		if status == Critical {
			c.criticalSince = time.Now()
		} else {
			c.criticalSince = time.Time{}
			c.deregistered = false
		}
		level := slog.LevelInfo
		if status != Passing {
			level = slog.LevelWarn
		}
		r.log.Log(context.Background(), level, "check status changed",
			"check", c.def.ID, "from", prev, "to", status, "output", output)
	}
	r.cfg.Sink.UpdateCheck(c.def.ID, status, output)
}

// stoppedTimer returns a timer that has not been armed.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// arm sets t to fire at deadline and returns its channel, or stops it and
// returns nil (a channel that never delivers) for a zero deadline. Since
// Go 1.23 a Reset timer never delivers a stale value.
func arm(t *time.Timer, deadline time.Time) <-chan time.Time {
	if deadline.IsZero() {
		t.Stop()
		return nil
	}
	t.Reset(time.Until(deadline))
	return t.C
}
