package checks

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// DeregisterCriticalServiceAfter, in a synctest bubble: ten minutes of
// TCP checks every 10 s (runs at 0s, 10s, 20s, …) take no real time.
func TestDeregisterCriticalServiceAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		runs   string // fakeDialer outcomes; the last repeats
		change func(*Definition)
		want   string // the deregister calls over ten minutes
	}{
		{"critical from the start", "-", nil,
			"1m30s deregister web"},
		{"measured from when it turned critical", "+++-", nil,
			"2m0s deregister web"}, // critical at 30s
		{"a recovery starts the clock again", "--+-", nil,
			"2m0s deregister web"}, // critical 0s-20s, passing at 20s, critical at 30s
		{"never while it passes", "+", nil,
			""},
		{"thresholds delay critical, and the clock", "+-", func(d *Definition) { d.FailuresBeforeCritical = 3 },
			"2m0s deregister web"}, // failures at 10s, 20s, critical at 30s
		{"warning is not critical", "+-", func(d *Definition) { d.FailuresBeforeWarning, d.FailuresBeforeCritical = 1, 100 },
			""},
		{"below the minimum it is raised to one minute", "-", func(d *Definition) { d.DeregisterCriticalServiceAfter = 10 * time.Second },
			"1m0s deregister web"},
		{"a node check deregisters nothing", "-", func(d *Definition) { d.ServiceID = "" },
			""},
		{"a TTL check that expires", "", func(d *Definition) {
			*d = Definition{ID: "web-ttl", ServiceID: "web", TTL: 30 * time.Second, Status: Passing, DeregisterCriticalServiceAfter: 2 * time.Minute}
		},
			"2m30s deregister web"}, // expired at 30s
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				def := Definition{ID: "web-tcp", ServiceID: "web", TCP: "web:80", Interval: 10 * time.Second,
					DeregisterCriticalServiceAfter: 90 * time.Second}
				if tc.change != nil {
					tc.change(&def)
				}
				_, rec := startRunner(t, true, withDialer(&fakeDialer{outcomes: cmpOr(tc.runs, "+")}), def)
				time.Sleep(10 * time.Minute)
				var got []string
				for line := range strings.Lines(rec.transcript()) {
					if strings.Contains(line, "deregister") {
						got = append(got, strings.TrimSpace(line))
					}
				}
				if g := strings.Join(got, "\n"); g != tc.want {
					t.Errorf("deregistrations in 10 minutes of runs %q\n got %q\nwant %q", tc.runs, g, tc.want)
				}
			})
		})
	}
}

// The Sink may remove the service's checks from DeregisterService, as
// the catalog does; the check then stops.
func TestDeregisterServiceMayRemoveTheCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "-"}
		rec := newRecorder(true)
		cfg := testConfig(t, rec)
		cfg.DialContext = dialer.DialContext
		var r *Runner
		cfg.Sink = removingSink{rec, func() { r.Remove("web-tcp") }}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Add(Definition{ID: "web-tcp", ServiceID: "web", TCP: "web:80", Interval: 10 * time.Second, DeregisterCriticalServiceAfter: 65 * time.Second}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(5 * time.Minute)
		want := "0s update web-tcp critical \"dial tcp web:80: connect: connection refused\"\n1m5s deregister web"
		if got := rec.transcript(); got != want {
			t.Errorf("Sink calls\n got %q\nwant %q", got, want)
		}
		if got := strings.Count(dialer.dialled(), "web:80"); got != 7 {
			t.Errorf("dialled web:80 %d times, want 7 (0s to 1m0s, then removed at 1m5s)", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// removingSink records like its recorder and calls remove from
// DeregisterService.
type removingSink struct {
	*recorder
	remove func()
}

func (s removingSink) DeregisterService(id string) {
	s.recorder.DeregisterService(id)
	s.remove()
}
