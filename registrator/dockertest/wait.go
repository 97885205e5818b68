package dockertest

import (
	"context"
	"testing"
	"time"
)

// WaitFor polls cond until it reports done or timeout passes, then fails
// the test with what it waited for and the last state cond described. It
// is for conditions only another process can change (the engine, a
// registry being written by someone else); the poll starts at 20ms and
// backs off to 250ms.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (done bool, state string)) {
	t.Helper()
	if err := Poll(t, timeout, cond); err != "" {
		t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, err)
	}
}

// Poll is WaitFor without the failure: it returns "" when cond became
// true, or the last state seen when timeout passed (or the test's context
// ended).
func Poll(t testing.TB, timeout time.Duration, cond func() (done bool, state string)) string {
	t.Helper()
	return pollCtx(t.Context(), timeout, cond)
}

// pollCtx is Poll under ctx rather than the test's context: a cleanup
// runs after the test's context has ended.
func pollCtx(ctx context.Context, timeout time.Duration, cond func() (done bool, state string)) string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	interval := 20 * time.Millisecond
	last := "(not checked yet)"
	for {
		done, state := cond()
		if done {
			return ""
		}
		last = state
		tick := time.NewTimer(interval)
		select {
		case <-deadline.C:
			tick.Stop()
			if done, state := cond(); done {
				return ""
			} else {
				return state
			}
		case <-ctx.Done():
			tick.Stop()
			return last + " (the context ended)"
		case <-tick.C:
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}
