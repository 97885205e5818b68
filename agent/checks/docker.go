package checks

import (
	"context"
	"fmt"
	"io"
)

// DockerExec runs commands in Docker containers, for Docker checks. The
// agent passes one over the engine's API (docker exec).
type DockerExec interface {
	// Exec runs cmd in container id, writes its stdout and stderr to
	// out, and returns its exit code once it has exited.
	Exec(ctx context.Context, id string, cmd []string, out io.Writer) (exitCode int, err error)
}

// probeDocker runs c's Args inside its container once, like Consul's
// CheckDocker: exit 0 is passing, 1 warning, anything else critical, and
// the output is what the command wrote (the last OutputMaxSize bytes).
// An engine that cannot run it (container gone, engine down) and a run
// past the timeout are critical, saying why.
func (r *Runner) probeDocker(ctx context.Context, c *check) (Status, string) {
	if r.cfg.Docker == nil {
		return Critical, fmt.Sprintf("Docker check in %s: this agent has no Docker engine to run it", c.def.DockerContainerID)
	}
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := newTail(r.cfg.OutputMaxSize)
	code, err := r.cfg.Docker.Exec(runCtx, c.def.DockerContainerID, c.def.Args, out)
	switch {
	case err != nil && runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		msg := fmt.Sprintf("Timed out (%s) running check", c.timeout)
		if s := out.String(); s != "" {
			msg += "\n\n" + s
		}
		return Critical, msg
	case err != nil:
		return Critical, err.Error()
	case code == 0:
		return Passing, out.String()
	case code == 1:
		return Warning, out.String()
	}
	return Critical, out.String()
}
