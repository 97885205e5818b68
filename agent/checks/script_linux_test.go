package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A script that outlives its Timeout is killed with everything it started
// (its process group), and the check is critical with what it wrote.
func TestScriptCheckTimeout(t *testing.T) {
	needShell(t)
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("this test reads /proc to see that the script's child was killed: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := fmt.Sprintf("echo started; sleep 60 & echo $! > %s; wait", pidFile)
	_, rec := startRunner(t, false, nil,
		Definition{ID: "slow", Args: []string{"sh", "-c", script}, Interval: time.Minute, Timeout: 200 * time.Millisecond})

	want := `update slow critical "Timed out (200ms) running check\n\nstarted\n"`
	if got := rec.waitLines(t, 1); got != want {
		t.Errorf("script past its timeout\n got %s\nwant %s", got, want)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The kill is done when the result is reported; the child may still be
	// a zombie waiting for its new parent to reap it, which is dead enough.
	deadline := time.Now().Add(5 * time.Second)
	for !dead(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the script's child (sleep 60, pid %d) still runs after the check timed out; its process group was not killed", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling another process: no event to wait on
	}
}

// dead reports whether process pid is gone or a zombie.
func dead(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z")
}
