package checks

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// scriptWaitDelay is how long a timed-out script's output pipe may stay
// open after the script was killed (a grandchild that left its process
// group still holds it) before the runner stops reading it.
const scriptWaitDelay = time.Second

// probeScript runs c's program once, like Consul's CheckMonitor: exit 0
// is passing, 1 warning, anything else critical, and the output is what
// it wrote to stdout and stderr together (the last OutputMaxSize bytes).
// Past the timeout the program and its children are killed and the check
// is critical: "Timed out (30s) running check".
func (r *Runner) probeScript(ctx context.Context, c *check) (Status, string) {
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, c.def.Args[0], c.def.Args[1:]...)
	out := newTail(r.cfg.OutputMaxSize)
	// The same writer for both: os/exec then uses one pipe, and the
	// output interleaves as the program wrote it.
	cmd.Stdout, cmd.Stderr = out, out
	killProcessGroup(cmd)
	cmd.WaitDelay = scriptWaitDelay

	err := cmd.Run()
	if err != nil && runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		msg := fmt.Sprintf("Timed out (%s) running check", c.timeout)
		if s := out.String(); s != "" {
			msg += "\n\n" + s
		}
		return Critical, msg
	}
	if cmd.ProcessState == nil {
		// It did not start (no such program, not executable).
		return Critical, err.Error()
	}
	// The exit code decides, also when err is exec.ErrWaitDelay: the
	// program exited but left a child in the background holding its
	// output open, which is no reason to fail the check.
	switch cmd.ProcessState.ExitCode() {
	case 0:
		return Passing, out.String()
	case 1:
		return Warning, out.String()
	}
	return Critical, out.String()
}
