package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/blocking"
	"github.com/cairn-dev/cairn/kv"
)

// DefaultHoldTimeout is how long a request waits for a leader before it
// fails: Consul's rpc_hold_timeout.
const DefaultHoldTimeout = 7 * time.Second

// Option configures a Router.
type Option func(*Router)

// HoldTimeout sets how long a request rides out an election or an
// unreachable server (Consul's rpc_hold_timeout; default 7s). Zero or
// less keeps the default.
func HoldTimeout(d time.Duration) Option {
	return func(r *Router) {
		if d > 0 {
			r.hold = d
		}
	}
}

// NodeExists sets how the router learns whether a node is in the
// catalog: a session may only be made for a node that exists, since only
// a known node's failure can end it.
func NodeExists(f func(node string) bool) Option {
	return func(r *Router) { r.nodeExists = f }
}

// errLeaderChanged: a request forwarded to the leader was cut short
// because a new leader was elected meanwhile.
var errLeaderChanged = errors.New("the leader changed while the request was out")

// attemptTimeout bounds one try of a request that does not block: long
// enough for any write the cluster takes, short enough that a paused or
// cut-off server leaves time within the hold to try the new leader.
func (r *Router) attemptTimeout() time.Duration { return max(r.hold/3, time.Second) }

// holdKind says what holdRequest may send again.
type holdKind int

const (
	// holdRead: a read, sent again freely.
	holdRead holdKind = iota
	// holdWrite: a write that carries a write ID; the state machine
	// applies one ID at most once and keeps its answer, so a write whose
	// answer was lost is sent again and gets the first answer.
	holdWrite
	// holdWriteOnce: a write whose answer is not kept for a repeat (a
	// transaction that also reads values: keeping what it read would
	// put every value it read in the state machine's record and every
	// snapshot). It goes without a write ID and, as in Consul, is not
	// sent again once it may have been applied: the caller learns the
	// outcome is unknown.
	holdWriteOnce
)

// holdRequest runs attempt until it succeeds, fails for good, or the hold
// time runs out: Consul's RPC hold. What is retried is only what is safe
// to send again: a request that never reached a leader, a read, or a
// write that carries a write ID (the state machine applies one ID at
// most once, so a write whose outcome was lost can be sent again). When
// the hold runs out after a write may have been applied, the error is
// kv.ErrOutcomeUnknown, never "no cluster leader".
//
// wait is the blocking-query wait of a read (0 for others): it extends
// each try, so a parked query is not cut short.
func (r *Router) holdRequest(ctx context.Context, kind holdKind, wait time.Duration, attempt func(ctx context.Context) error) error {
	write := kind != holdRead
	if kind == holdWrite && kv.WriteID(ctx) == "" {
		ctx = kv.WithWriteID(ctx, r.pool.prefix+"-w"+strconv.FormatUint(r.pool.seq.Add(1), 10))
	}
	until := time.Now().Add(r.hold)
	perTry := r.attemptTimeout()
	if wait > 0 {
		perTry += blocking.Wait(wait) + blocking.Wait(wait)/16
	}
	var (
		mayApplied bool
		last       error
	)
	for try := 0; ; try++ {
		var changed <-chan struct{}
		if r.local != nil {
			changed = r.local.LeaderChanged()
		}
		actx, cancel := context.WithTimeout(ctx, perTry)
		err := attempt(actx)
		timedOut := err != nil && actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut {
			err = fmt.Errorf("%w: no answer within %v", errAttemptTimeout, perTry)
		}
		if write && (timedOut || cutOff(err) || errors.Is(err, kv.ErrOutcomeUnknown) || errors.Is(err, ErrConnectionLost) || errors.Is(err, errLeaderChanged)) {
			mayApplied = true
			if kind == holdWriteOnce {
				if errors.Is(err, kv.ErrOutcomeUnknown) {
					return err
				}
				return fmt.Errorf("%w: %v (a transaction that reads values is not sent again once it may have been applied)", kv.ErrOutcomeUnknown, err)
			}
		}
		stopping := false
		if r.local != nil {
			select {
			case <-r.local.Stopping():
				stopping = true // this agent is stopping: nothing to wait for
			default:
			}
		}
		if stopping || ctx.Err() != nil {
			if write && mayApplied && !errors.Is(err, kv.ErrOutcomeUnknown) {
				return fmt.Errorf("%w: %v", kv.ErrOutcomeUnknown, err)
			}
			return err
		}
		if !retryable(err) {
			if mayApplied && !errors.Is(err, kv.ErrOutcomeUnknown) {
				// An earlier try may have been applied; this one's
				// definite answer covers only itself.
				return fmt.Errorf("%w: an earlier attempt's result was lost, then: %v", kv.ErrOutcomeUnknown, err)
			}
			return err
		}
		last = err
		if !time.Now().Before(until) {
			break
		}
		if !r.pauseBeforeRetry(ctx, until, try, changed) {
			break
		}
	}
	if mayApplied {
		if errors.Is(last, kv.ErrOutcomeUnknown) {
			return last
		}
		return fmt.Errorf("%w: no leader confirmed it within the hold time (%v): %v", kv.ErrOutcomeUnknown, r.hold, last)
	}
	if errors.Is(last, kv.ErrNoLeader) || errors.Is(last, kv.ErrNotLeader) {
		return fmt.Errorf("%w: none within the hold time (%v): %v", kv.ErrNoLeader, r.hold, trimSentinel(last))
	}
	return fmt.Errorf("%w: no answer within the hold time (%v): %v", kv.ErrNoLeader, r.hold, last)
}

// cutOff reports whether a try ended because the caller's context did
// (the client gave up, or the agent stopping cancelled its requests): a
// write it carried may have reached the leader and been applied, and
// only its answer is missing. Reporting the context's error instead lets
// the HTTP layer take it for a client that went away and answer nothing,
// which net/http sends as an empty 200: Consul's client reads that as a
// CAS that did not swap, or a put that was done.
func cutOff(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// errAttemptTimeout: one try got no answer within its bound (a paused or
// cut-off server).
var errAttemptTimeout = errors.New("server did not answer in time")

// retryable reports whether a failed try may be repeated (writes carry
// their write ID, so outcome-unknown ones may too).
func retryable(err error) bool {
	switch {
	case errors.Is(err, kv.ErrNoLeader), errors.Is(err, kv.ErrNotLeader), errors.Is(err, kv.ErrShutdown),
		errors.Is(err, ErrUnreachable), errors.Is(err, ErrConnectionLost), errors.Is(err, kv.ErrOutcomeUnknown),
		errors.Is(err, errLeaderChanged), errors.Is(err, errAttemptTimeout):
		return true
	}
	return false
}

// pauseBeforeRetry waits before the next try: on a server until the
// leader it knows changes (at most a short while: the change may have
// come before the watch began); on a client with a growing backoff. It
// returns false when ctx ends or the hold runs out.
func (r *Router) pauseBeforeRetry(ctx context.Context, until time.Time, try int, changed <-chan struct{}) bool {
	d := min(10*time.Millisecond<<min(try, 5), 250*time.Millisecond)
	d += rand.N(d / 2)
	if rest := time.Until(until); rest < d {
		d = max(rest, 0)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	case <-t.C:
	}
	return true
}

func trimSentinel(err error) string {
	msg := err.Error()
	for _, s := range []error{kv.ErrNoLeader, kv.ErrNotLeader} {
		if p := s.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
		if msg == s.Error() {
			return "no server knows a leader"
		}
	}
	return msg
}
