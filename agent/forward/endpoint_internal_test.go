package forward

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// TestEndpointContext: a forwarded request runs under a context with the
// caller's token and deadline, which the caller's Cancel ends, whether it
// arrives during the call or (the two race) before it.
func TestEndpointContext(t *testing.T) {
	tests := []struct {
		name         string
		req          Request
		cancelBefore bool
		cancelDuring bool
		wantDeadline bool
		wantDone     bool // the context is done before the call ends
	}{
		{name: "no deadline, not cancelled", req: Request{CallID: "a"}},
		{name: "the caller's deadline", req: Request{CallID: "b", Timeout: time.Hour}, wantDeadline: true},
		{name: "cancelled during the call", req: Request{CallID: "c"}, cancelDuring: true, wantDone: true},
		{name: "cancelled before the call arrived", req: Request{CallID: "d"}, cancelBefore: true, wantDone: true},
		{name: "the token rides along", req: Request{CallID: "e", Token: "secret"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Endpoint{calls: map[string]context.CancelFunc{}, early: map[string]time.Time{}}
			if tc.cancelBefore {
				e.Cancel(tc.req.CallID, nil)
			}
			ctx, done := e.begin(&tc.req)
			if tc.cancelDuring {
				e.Cancel(tc.req.CallID, nil)
			}
			if got := kv.Token(ctx); got != tc.req.Token {
				t.Errorf("token = %q, want %q", got, tc.req.Token)
			}
			if _, ok := ctx.Deadline(); ok != tc.wantDeadline {
				t.Errorf("has deadline = %v, want %v", ok, tc.wantDeadline)
			}
			if got := ctx.Err() != nil; got != tc.wantDone {
				t.Errorf("done during the call = %v (%v), want %v", got, ctx.Err(), tc.wantDone)
			}
			done()
			if ctx.Err() == nil {
				t.Error("the context outlives its call")
			}
			if len(e.calls) != 0 || len(e.early) != 0 {
				t.Errorf("the endpoint keeps %d calls and %d early cancels after the call; want none", len(e.calls), len(e.early))
			}
		})
	}
}
