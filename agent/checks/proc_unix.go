//go:build unix

package checks

import (
	"os/exec"
	"syscall"
)

// killProcessGroup runs cmd in a process group of its own and makes its
// cancellation kill the whole group, so that a timed-out `sh -c "…"`
// does not leave its children running (Consul's KillCommandSubtree).
func killProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
