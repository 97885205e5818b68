package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// shellResult is what a command printed, kept for messages.
type shellResult struct {
	stdout, stderr bytes.Buffer
}

// firstLine is the first non-empty line the command wrote to stderr, or to
// stdout when stderr is empty: what a message quotes.
func (r *shellResult) firstLine() string {
	for _, b := range []*bytes.Buffer{&r.stderr, &r.stdout} {
		for line := range strings.Lines(b.String()) {
			if line = strings.TrimSpace(line); line != "" {
				return line
			}
		}
	}
	return ""
}

// maxKept bounds what is kept of a command's output for messages.
const maxKept = 64 << 10

type capped struct{ b *bytes.Buffer }

func (c capped) Write(p []byte) (int, error) {
	if room := maxKept - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runShell runs command with sh -c, with env added to the process's
// environment, and kills it (and what it started, on unix) after
// timeout. Its output goes to out as well as into the result.
func runShell(ctx context.Context, command string, timeout time.Duration, env []string, out io.Writer) (*shellResult, error) {
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if out == nil {
		out = io.Discard
	}
	res := &shellResult{}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(out, capped{&res.stdout})
	cmd.Stderr = io.MultiWriter(out, capped{&res.stderr})
	// A command that leaves a child holding its output open (a daemon it
	// started) must not hold up the runner.
	cmd.WaitDelay = time.Second
	killGroup(cmd)
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, fmt.Errorf("did not finish within %s and was killed; raise the timeout if it needs longer", timeout)
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return res, fmt.Errorf("exited with status %d", exit.ExitCode())
		}
		return res, err
	}
	return res, nil
}
