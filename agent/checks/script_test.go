package checks

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// needShell skips a test that runs /bin/sh where there is none.
func needShell(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("script checks run sh -c here, and there is no /bin/sh: %v", err)
	}
}

func TestScriptCheck(t *testing.T) {
	needShell(t)
	fiveK := strings.Repeat("12345", 1000)
	for _, tc := range []struct {
		name       string
		args       []string
		want       Status
		wantOutput string
	}{
		{"exit 0 is passing", []string{"sh", "-c", "exit 0"}, Passing, ""},
		{"exit 1 is warning", []string{"sh", "-c", "exit 1"}, Warning, ""},
		{"exit 2 is critical", []string{"sh", "-c", "exit 2"}, Critical, ""},
		{"killed is critical", []string{"sh", "-c", "kill -9 $$"}, Critical, ""},
		{"stdout and stderr together", []string{"sh", "-c", "echo out; echo err >&2; exit 1"}, Warning, "out\nerr\n"},
		{"arguments are passed without a shell", []string{"echo", "a  b", "$HOME"}, Passing, "a  b $HOME\n"},
		{"output keeps the last 4 KiB", []string{"sh", "-c", `i=0; while [ $i -lt 1000 ]; do printf 12345; i=$((i+1)); done`}, Passing,
			fmt.Sprintf("Captured 4096 of 5000 bytes\n...\n%s", fiveK[5000-4096:])},
		{"no such program", []string{"/nonexistent/check_mem"}, Critical,
			"fork/exec /nonexistent/check_mem: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Start in another status than the one expected, so that even
			// a result without output is a change the Sink hears of.
			initial := Passing
			if tc.want == Passing {
				initial = Critical
			}
			_, rec := startRunner(t, false, nil, Definition{ID: "mem", Args: tc.args, Interval: time.Minute, Status: initial})
			want := fmt.Sprintf("update mem %s %q", tc.want, tc.wantOutput)
			if got := rec.waitLines(t, 1); got != want {
				t.Errorf("first result of %q\n got %s\nwant %s", tc.args, got, want)
			}
		})
	}
}
