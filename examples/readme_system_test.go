//go:build system && linux

package examples

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemREADME runs the top-level README's tested blocks as written
// (default ports, 127.0.0.N addresses) in a network namespace of its own.
func TestSystemREADME(t *testing.T) {
	systemtest.NeedRoot(t) // the network namespace
	for _, c := range []string{"make", "go", "curl", "dig", "ip"} {
		systemtest.NeedCommand(t, c)
	}
	// The README keeps its state and logs in data/ of the checkout.
	os.RemoveAll("../data")
	t.Cleanup(func() { os.RemoveAll("../data") })
	out := RunREADME(t, "../README.md", RunOptions{NetNS: true, Timeout: 15 * time.Minute})
	for _, want := range []string{"Configuration is valid!", "server 127.0.0.1:8080;", "s1 ", "c1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("the README's output lacks %q:\n%s", want, out)
		}
	}
}

// TestSystemMakeRun presses Ctrl-C on `make run` the way a terminal does
// (SIGINT to the foreground process group): the agent stops gracefully
// and make reports no error.
func TestSystemMakeRun(t *testing.T) {
	systemtest.NeedRoot(t) // the network namespace: make run takes 127.0.0.1:8500
	systemtest.NeedCommand(t, "make")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", "..", "run")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNET}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var log strings.Builder
	sc := bufio.NewScanner(r)
	ready := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "became raft leader") {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("make run ended before the agent was up:\n%s", log.String())
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // Ctrl-C
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	if strings.Contains(log.String(), "make: ***") || strings.Contains(log.String(), "Error") {
		t.Errorf("Ctrl-C on make run printed an error:\n%s", log.String())
	}
	// make re-raises SIGINT on itself after its recipe ended; what
	// matters is that cairn exited 0, which make would otherwise report.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 0) {
		t.Errorf("make run after Ctrl-C: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "left the cluster") && !strings.Contains(log.String(), "stopped") {
		t.Logf("agent log after Ctrl-C:\n%s", log.String())
	}
}
