package checks

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// These run TCP checks every 10 s in a synctest bubble, over a fakeDialer
// whose script says which runs connect ('+') and which are refused ('-').
// time.Sleep advances the bubble's fake clock; it takes no real time.

func TestThresholds(t *testing.T) {
	for _, tc := range []struct {
		name                                string
		successBefore, warnAfter, critAfter int
		runs                                string
		want                                string // the status after each run
	}{
		{"none: every result counts", 0, 0, 0, "+-+-",
			"passing critical passing critical"},
		{"1 is the same as none", 1, 0, 1, "+-+-",
			"passing critical passing critical"},
		{"the first result counts at once, as in Consul", 3, 0, 3, "-",
			"critical"},
		{"the first result counts at once, passing too", 3, 0, 3, "+",
			"passing"},
		{"FailuresBeforeCritical", 0, 0, 3, "+---+",
			"passing passing passing critical passing"},
		{"a success resets the failure count", 0, 0, 2, "+-+-+--",
			"passing passing passing passing passing passing critical"},
		{"FailuresBeforeWarning warns on the way", 0, 2, 4, "+-----",
			"passing passing warning warning critical critical"},
		{"FailuresBeforeWarning equal to critical: no warning step", 0, 3, 3, "+---",
			"passing passing passing critical"},
		{"SuccessBeforePassing", 2, 0, 0, "-+-++-+++",
			"critical critical critical critical passing critical critical passing passing"},
		{"both", 2, 0, 2, "+--+-++",
			"passing passing critical critical critical critical passing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dialer := &fakeDialer{outcomes: tc.runs}
				_, rec := startRunner(t, true, withDialer(dialer), Definition{
					ID: "db", TCP: "db:5432", Interval: 10 * time.Second,
					SuccessBeforePassing: tc.successBefore, FailuresBeforeWarning: tc.warnAfter, FailuresBeforeCritical: tc.critAfter,
				})
				var got []string
				for i := range len(tc.runs) {
					if i > 0 {
						time.Sleep(10 * time.Second)
					}
					synctest.Wait()
					got = append(got, string(rec.status("db")))
				}
				if g := strings.Join(got, " "); g != tc.want {
					t.Errorf("runs %s with SuccessBeforePassing=%d FailuresBeforeWarning=%d FailuresBeforeCritical=%d\n got %s\nwant %s\nSink calls:\n%s",
						tc.runs, tc.successBefore, tc.warnAfter, tc.critAfter, g, tc.want, rec.transcript())
				}
			})
		})
	}
}

// The Sink hears of changes only, and a warning reached by
// FailuresBeforeWarning carries the failure's output.
func TestSinkHearsOnlyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &fakeDialer{outcomes: "+++----+"}
		_, rec := startRunner(t, true, withDialer(dialer), Definition{
			ID: "db", TCP: "db:5432", Interval: 10 * time.Second, FailuresBeforeWarning: 1, FailuresBeforeCritical: 3,
		})
		time.Sleep(71 * time.Second) // runs at 0s, 10s, … 70s
		want := strings.Join([]string{
			`0s update db passing "TCP connect db:5432: Success"`,
			`30s update db warning "dial tcp db:5432: connect: connection refused"`,
			`50s update db critical "dial tcp db:5432: connect: connection refused"`,
			`1m10s update db passing "TCP connect db:5432: Success"`,
		}, "\n")
		if got := rec.transcript(); got != want {
			t.Errorf("Sink calls\n got:\n%s\nwant:\n%s", got, want)
		}
	})
}
