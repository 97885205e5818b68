package checks

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Lifecycle: when checks start and stop. All in synctest bubbles, over a
// fakeDialer; synctest.Test also fails if Run leaves a goroutine behind.

func TestChecksStartWithRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		rec := newRecorder(true)
		cfg := testConfig(t, rec)
		cfg.DialContext = dialer.DialContext
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Add(Definition{ID: "db", TCP: "db:5432", Interval: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if got := dialer.dialled(); got != "" {
			t.Errorf("before Run, dialled %q; New and Add must start nothing", got)
		}

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		time.Sleep(25 * time.Second)
		if got, want := dialer.dialled(), "db:5432 db:5432 db:5432"; got != want {
			t.Errorf("25s into Run, dialled %q, want %q (at 0s, 10s, 20s)", got, want)
		}
		if err := r.Run(ctx); err == nil || err.Error() != "checks: Run is already running; call it once, from the agent's errgroup" {
			t.Errorf("second Run = %v, want the already-running error", err)
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		time.Sleep(time.Minute)
		if got := dialer.dialled(); got != "" {
			t.Errorf("after Run returned, dialled %q", got)
		}

		// Run again: the checks start again.
		ctx, cancel = context.WithCancel(context.Background())
		go func() { done <- r.Run(ctx) }()
		synctest.Wait()
		if got, want := dialer.dialled(), "db:5432"; got != want {
			t.Errorf("on the second Run, dialled %q, want %q", got, want)
		}
		cancel()
		<-done
	})
}

func TestRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		r, rec := startRunner(t, true, withDialer(dialer), Definition{ID: "db", TCP: "db:5432", Interval: 10 * time.Second})
		time.Sleep(5 * time.Second)
		r.Remove("db")
		r.Remove("db")      // again: a no-op
		r.Remove("unknown") // a no-op
		time.Sleep(time.Minute)
		if got, want := dialer.dialled(), "db:5432"; got != want {
			t.Errorf("dialled %q, want %q (once, before Remove)", got, want)
		}
		if got, want := rec.transcript(), `0s update db passing "TCP connect db:5432: Success"`; got != want {
			t.Errorf("Sink calls %q, want %q", got, want)
		}
		if err := r.TTL("db", Passing, ""); err == nil {
			t.Errorf("TTL of a removed check = nil, want an error")
		}
	})
}

func TestAddReplaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		def := Definition{ID: "db", Name: "database", TCP: "db-1:5432", Interval: 10 * time.Second}
		r, rec := startRunner(t, true, withDialer(dialer), def)
		add := func(d Definition) {
			t.Helper()
			if err := r.Add(d); err != nil {
				t.Fatal(err)
			}
		}

		// The same check again, or renamed: nothing changes, the next run is
		// still at 10s.
		time.Sleep(5 * time.Second)
		add(def)
		renamed := def
		renamed.Name, renamed.Notes = "primary database", "see the runbook"
		add(renamed)
		time.Sleep(10 * time.Second)
		if got, want := dialer.dialled(), "db-1:5432 db-1:5432"; got != want {
			t.Errorf("re-adding the same check: dialled %q, want %q (at 0s and 10s)", got, want)
		}

		// Another address: the old check stops, the new one starts afresh
		// (critical, then its first result at once).
		moved := def
		moved.TCP = "db-2:5432"
		add(moved)
		time.Sleep(25 * time.Second)
		if got, want := dialer.dialled(), "db-2:5432 db-2:5432 db-2:5432"; got != want {
			t.Errorf("after replacing: dialled %q, want %q (at 15s, 25s, 35s)", got, want)
		}
		want := `0s update db passing "TCP connect db-1:5432: Success"` + "\n" +
			`15s update db passing "TCP connect db-2:5432: Success"`
		if got := rec.transcript(); got != want {
			t.Errorf("Sink calls\n got %q\nwant %q", got, want)
		}

		// A new initial Status is a new check too.
		passing := moved
		passing.Status = Passing
		add(passing)
		synctest.Wait()
		if got, want := dialer.dialled(), "db-2:5432"; got != want {
			t.Errorf("after changing Status: dialled %q, want %q", got, want)
		}
	})
}

func TestStagger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		startRunner(t, true, func(c *Config) {
			c.DialContext = dialer.DialContext
			c.DisableStagger = false
		}, Definition{ID: "db", TCP: "db:5432", Interval: time.Hour})
		synctest.Wait()
		if got := dialer.dialled(); got != "" {
			t.Errorf("with stagger, dialled %q at once; want the first run later within the interval", got)
		}
		time.Sleep(time.Hour)
		if got := dialer.dialled(); got == "" {
			t.Errorf("with stagger, no run within the first interval (1h)")
		}
	})
}

func TestIntervalBelowMinimumIsRaised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		startRunner(t, true, withDialer(dialer), Definition{ID: "db", TCP: "db:1", Interval: time.Millisecond})
		time.Sleep(3500 * time.Millisecond)
		if got, want := dialer.dialled(), "db:1 db:1 db:1 db:1"; got != want {
			t.Errorf("Interval=1ms over 3.5s: dialled %q, want %q (every MinInterval, 1s)", got, want)
		}
	})
}

func TestCheckLimits(t *testing.T) {
	r, err := New(testConfig(t, newRecorder(false)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                          string
		def                           Definition
		interval, timeout, deregAfter time.Duration
	}{
		{"http default timeout", Definition{HTTP: "http://a/", Interval: time.Minute}, time.Minute, 10 * time.Second, 0},
		{"script default timeout", Definition{Args: []string{"true"}, Interval: time.Minute}, time.Minute, 30 * time.Second, 0},
		{"default timeout capped at the interval", Definition{TCP: "a:1", Interval: 5 * time.Second}, 5 * time.Second, 5 * time.Second, 0},
		{"timeout capped at the interval", Definition{TCP: "a:1", Interval: 5 * time.Second, Timeout: time.Minute}, 5 * time.Second, 5 * time.Second, 0},
		{"timeout below the interval", Definition{TCP: "a:1", Interval: 5 * time.Second, Timeout: time.Second}, 5 * time.Second, time.Second, 0},
		{"interval raised to the minimum", Definition{TCP: "a:1", Interval: time.Millisecond}, time.Second, time.Second, 0},
		{"deregister", Definition{ServiceID: "a", TTL: time.Minute, DeregisterCriticalServiceAfter: time.Hour}, 0, 0, time.Hour},
		{"deregister raised to the minimum", Definition{ServiceID: "a", TTL: time.Minute, DeregisterCriticalServiceAfter: time.Second}, 0, 0, time.Minute},
		{"no deregister for a node check", Definition{TTL: time.Minute, DeregisterCriticalServiceAfter: time.Hour}, 0, 0, 0},
	} {
		c := r.newCheck(tc.def, time.Now())
		if c.interval != tc.interval || c.timeout != tc.timeout || c.deregAfter != tc.deregAfter {
			t.Errorf("%s: interval, timeout, deregister after = %s, %s, %s; want %s, %s, %s",
				tc.name, c.interval, c.timeout, c.deregAfter, tc.interval, tc.timeout, tc.deregAfter)
		}
	}
}

func TestAddCopiesTheDefinition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+"}
		def := Definition{ID: "db", TCP: "db:1", Interval: 10 * time.Second, Header: map[string][]string{"X": {"1"}}}
		r, _ := startRunner(t, true, withDialer(dialer), def)
		synctest.Wait()
		def.Header["X"][0] = "2" // the caller reuses its map
		if err := r.Add(def); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got, want := dialer.dialled(), "db:1 db:1"; got != want {
			t.Errorf("re-adding after changing the caller's Header map: dialled %q, want %q (a changed check restarts)", got, want)
		}
	})
}

// Add, Remove and TTL from many goroutines while checks run and expire,
// with a Sink that calls back into the Runner as the catalog may: no race
// (under -race), no deadlock (synctest would report it), and the Sink's
// calls for one check never overlap.
func TestConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+-"}
		rec := newRecorder(true)
		sink := &overlapSink{recorder: rec, inCall: map[string]bool{}}
		cfg := testConfig(t, rec)
		cfg.Logger = nil // quiet: thousands of changes
		cfg.DialContext = dialer.DialContext
		cfg.Sink = sink
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sink.r = r
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		ttl := Definition{ID: "app", ServiceID: "app", TTL: 2 * time.Second, DeregisterCriticalServiceAfter: time.Minute}
		tcp := Definition{ID: "db", TCP: "db:1", Interval: time.Second}
		var workers sync.WaitGroup
		for w := range 4 {
			workers.Go(func() {
				for i := range 200 {
					switch (w + i) % 5 {
					case 0:
						r.Add(ttl)
					case 1:
						r.TTL("app", []Status{Passing, Warning, Critical}[i%3], "note")
					case 2:
						moved := tcp
						moved.Interval = time.Duration(1+i%3) * time.Second
						r.Add(moved)
					case 3:
						r.Remove("db")
					case 4:
						time.Sleep(time.Duration(i%7) * 100 * time.Millisecond)
					}
				}
			})
		}
		workers.Wait()
		time.Sleep(5 * time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if sink.overlaps > 0 {
			t.Errorf("%d Sink calls for a check overlapped another for the same check", sink.overlaps)
		}
	})
}

// overlapSink counts calls for a check that start while another for the
// same check is under way; it re-adds a TTL check from UpdateCheck and
// removes the check from DeregisterService, as a catalog might.
type overlapSink struct {
	*recorder
	r        *Runner
	mu       sync.Mutex
	inCall   map[string]bool
	overlaps int
}

func (s *overlapSink) UpdateCheck(id string, status Status, output string) {
	s.mu.Lock()
	if s.inCall[id] {
		s.overlaps++
	}
	s.inCall[id] = true
	s.mu.Unlock()
	runtime.Gosched() // give an overlapping call its chance
	if id == "app" && status == Critical {
		s.r.Add(Definition{ID: "app", ServiceID: "app", TTL: 2 * time.Second, DeregisterCriticalServiceAfter: time.Minute})
	}
	s.mu.Lock()
	s.inCall[id] = false
	s.mu.Unlock()
}

func (s *overlapSink) DeregisterService(id string) { s.r.Remove(id) }

// A replacing Add does not wait for a Sink call of the old check under
// way, and the new check's calls wait for it: the Sink hears the old
// state, then the new, never both at once. Real time, not a bubble: the
// new check's call blocks on a mutex, which synctest cannot wait for.
func TestReplacedCheckReportsInOrder(t *testing.T) {
	sink := &blockingSink{entered: make(chan string, 2), release: make(chan struct{})}
	cfg := testConfig(t, newRecorder(false))
	cfg.Sink = sink
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	def := Definition{ID: "app", TTL: time.Minute}
	if err := r.Add(def); err != nil {
		t.Fatal(err)
	}

	oldDone := make(chan error)
	go func() { oldDone <- r.TTL("app", Passing, "old") }()
	if got := <-sink.entered; got != "passing old" {
		t.Fatalf("first Sink call %q, want %q", got, "passing old")
	}
	def.TTL = 2 * time.Minute
	if err := r.Add(def); err != nil { // returns although the old check's call is blocked
		t.Fatal(err)
	}
	newDone := make(chan error)
	go func() { newDone <- r.TTL("app", Warning, "new") }()

	// Without the ordering, the new call enters the Sink at once (within
	// microseconds); give it a generous chance to show that it waits.
	select {
	case got := <-sink.entered:
		t.Fatalf("Sink call %q for the new check started while the old check's was under way", got)
	case <-time.After(100 * time.Millisecond):
	}
	close(sink.release)
	if err := <-oldDone; err != nil {
		t.Errorf("TTL of the old check = %v", err)
	}
	if err := <-newDone; err != nil {
		t.Errorf("TTL of the new check = %v", err)
	}
	if got := <-sink.entered; got != "warning new" {
		t.Errorf("second Sink call %q, want %q", got, "warning new")
	}
}

// blockingSink reports each UpdateCheck on entered and returns only once
// release is closed.
type blockingSink struct {
	entered chan string
	release chan struct{}
}

func (s *blockingSink) UpdateCheck(id string, status Status, output string) {
	s.entered <- string(status) + " " + output
	<-s.release
}

func (s *blockingSink) DeregisterService(string) {}
