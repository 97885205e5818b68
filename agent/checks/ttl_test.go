package checks

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TTL checks run in a synctest bubble: their 30 s pass in no real time.

func TestTTLCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rec := startRunner(t, true, nil, Definition{ID: "app", TTL: 30 * time.Second})
		step := func(sleep time.Duration, update func(), want string) {
			t.Helper()
			time.Sleep(sleep)
			if update != nil {
				update()
			}
			synctest.Wait()
			if got := rec.transcript(); got != want {
				t.Errorf("after %s\n got %q\nwant %q", time.Since(rec.start), got, want)
			}
		}
		ttl := func(s Status, note string) func() {
			return func() {
				if err := r.TTL("app", s, note); err != nil {
					t.Errorf("TTL(app, %s, %q) = %v", s, note, err)
				}
			}
		}

		step(0, nil, "")
		step(10*time.Second, ttl(Passing, "serving"), `10s update app passing "serving"`)
		step(10*time.Second, ttl(Passing, "serving"), "") // the same: not reported, but the TTL restarts
		step(30*time.Second-time.Nanosecond, nil, "")
		step(time.Nanosecond, nil, `50s update app critical "TTL expired (last output before timeout follows): serving"`)
		step(5*time.Minute, nil, "") // expires once
		step(0, ttl(Warning, "slow"), `5m50s update app warning "slow"`)
		step(0, ttl(Critical, ""), `5m50s update app critical ""`)
		step(30*time.Second, nil, `6m20s update app critical "TTL expired"`)
	})
}

func TestTTLCheckNeverUpdatedExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, rec := startRunner(t, true, nil, Definition{ID: "app", TTL: time.Minute, Status: Passing})
		time.Sleep(2 * time.Minute)
		if got, want := rec.transcript(), `1m0s update app critical "TTL expired"`; got != want {
			t.Errorf("TTL check never updated\n got %q\nwant %q", got, want)
		}
	})
}

func TestTTLNoteIsTruncated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rec := startRunner(t, true, nil, Definition{ID: "app", TTL: time.Minute})
		note := strings.Repeat("n", 5000)
		if err := r.TTL("app", Passing, note); err != nil {
			t.Fatal(err)
		}
		want := `0s update app passing "` + note[:BufSize] + ` ... (captured 4096 of 5000 bytes)"`
		if got := rec.transcript(); got != want {
			t.Errorf("TTL with a 5000-byte note\n got %.80q…\nwant %.80q…", got, want)
		}
	})
}

func TestTTLErrors(t *testing.T) {
	rec := newRecorder(false)
	r, err := New(testConfig(t, rec))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Definition{
		{ID: "app", TTL: time.Minute},
		{ID: "web", HTTP: "http://127.0.0.1:1/", Interval: 10 * time.Second},
	} {
		if err := r.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id      string
		status  Status
		is      error
		wantErr string
	}{
		{"nope", Passing, ErrUnknownCheck, `unknown check ID "nope"; ensure that the check ID is passed, not the check name`},
		{"web", Passing, ErrNotTTL, `CheckID "web" does not have associated TTL: it is an HTTP check, which the agent runs itself every 10s; only a TTL check's status can be set`},
		{"app", "ok", ErrInvalidStatus, `invalid check status "ok"; want passing, warning or critical`},
		{"app", "", ErrInvalidStatus, `invalid check status ""; want passing, warning or critical`},
	} {
		err := r.TTL(tc.id, tc.status, "note")
		if !errors.Is(err, tc.is) || err.Error() != tc.wantErr {
			t.Errorf("TTL(%q, %q) = %v\nwant %q (errors.Is %v)", tc.id, tc.status, err, tc.wantErr, tc.is)
		}
	}
	if got := rec.transcript(); got != "" {
		t.Errorf("failed TTL calls reported %q", got)
	}
	// Without Run, TTL still updates (the TTL only expires under Run).
	if err := r.TTL("app", Passing, "up"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.transcript(), `update app passing "up"`; got != want {
		t.Errorf("TTL before Run reported %q, want %q", got, want)
	}
}
