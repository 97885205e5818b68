//go:build linux

package examples

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
	err = cmd.Run()
	if cmd.Process != nil {
		// Whatever the README left running in the background.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("%s: the README's commands failed (%v; timeout %v):\n%s", path, err, opt.Timeout, out.String())
	}
	return out.String()
}
