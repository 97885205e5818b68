//go:build linux

package examples

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RunOptions says how RunREADME runs a README's script.
type RunOptions struct {
	// Env is added to the test's environment (e.g. PATH with the cairn
	// under test first, COMPOSE_PROJECT_NAME).
	Env []string
	// NetNS runs the script in a new network namespace with only
	// loopback up (needs root), so that the README's fixed ports
	// (8500, 8600, 8080) cannot clash with anything else on the machine.
	NetNS bool
	// Timeout bounds the whole script.
	Timeout time.Duration
}

// RunREADME runs the tested blocks of the README at path (see Script)
// with bash, in the README's directory, and fails t with the output when
// the script fails. The script runs in a process group of its own, which
// is killed when the script ends, so the README's background jobs
// (cairn agent -dev &) never outlive the test. It returns the output.
func RunREADME(t testing.TB, path string, opt RunOptions) string {
	t.Helper()
	script, err := Script(path)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Timeout == 0 {
		opt.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), opt.Timeout)
	defer cancel()
	prelude := ""
	if opt.NetNS {
		prelude = "ip link set lo up\n"
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+script)
	cmd.Dir = filepath.Dir(path)
	cmd.Env = append(os.Environ(), opt.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if opt.NetNS {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A daemon the README started (nginx) leaves the process group and
	// may hold the output pipe: stop reading a while after bash exits.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start bash: %v", path, err)
	}
	netns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	err = cmd.Wait()
	// Whatever the README left running in the background: its process
	// group and, in a namespace of the test's own, everything in it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if own, _ := os.Readlink("/proc/self/ns/net"); opt.NetNS && netns != "" && netns != own {
		killNetNS(netns)
	}
	if err != nil {
		t.Fatalf("%s: the README's commands failed (%v; timeout %v):\n%s", path, err, opt.Timeout, out.String())
	}
	return out.String()
}

// killNetNS kills every process in the network namespace named by the
// /proc/<pid>/ns/net link target netns (one RunREADME created).
func killNetNS(netns string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		if ns, err := os.Readlink(p); err == nil && ns == netns {
			if pid, err := strconv.Atoi(strings.Split(p, "/")[2]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}
