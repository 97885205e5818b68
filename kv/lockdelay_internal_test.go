package kv

import (
	"fmt"
	"testing"
	"time"
)

// TestLockDelaysForgetWhatRanOut: a delay blocks its key until it runs
// out; keys whose delays ran out are dropped as new ones are set, so a
// server that never checks them again (a follower, or per-job lock keys
// nobody takes twice) does not keep every key it has seen.
func TestLockDelaysForgetWhatRanOut(t *testing.T) {
	d := newLockDelays()
	t0 := time.Unix(1_700_000_000, 0)
	d.set("held", t0.Add(time.Minute), t0)
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {59 * time.Second, true}, {time.Minute, false}} {
		// blocked forgets a key that ran out, so ask a copy.
		c := &lockDelays{m: map[string]time.Time{"held": d.m["held"]}}
		if got := c.blocked("held", t0.Add(tc.at)); got != tc.want {
			t.Errorf("blocked at +%v = %v, want %v", tc.at, got, tc.want)
		}
	}
	// A thousand keys, each delayed a millisecond, set a second apart:
	// at any time at most one is still delayed.
	for i := range 1000 {
		now := t0.Add(time.Duration(i+1) * time.Second)
		d.set(fmt.Sprintf("jobs/%d", i), now.Add(time.Millisecond), now)
	}
	if n := len(d.m); n > 128 {
		t.Errorf("%d keys kept after 1000 delays that ran out one by one, want at most 128", n)
	}
	if !d.blocked("jobs/999", t0.Add(1000*time.Second)) {
		t.Error("the last key's delay, still running, was dropped")
	}
}
