package rexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// EventName is the user event that asks agents to run a job.
const EventName = "_rexec"

// Protocol constants, Consul's (agent/remote_exec.go).
const (
	jobKey         = "job"
	ackSuffix      = "ack"
	exitSuffix     = "exit"
	outputDivider  = "out"
	outputSize     = 4 * 1024
	outputDeadline = 500 * time.Millisecond
)

// Event is the payload of the "_rexec" user event.
type Event struct {
	Prefix  string
	Session string
}

// Spec is the job the CLI stores under <prefix>/<session>/job.
type Spec struct {
	// Command runs through the shell.
	Command string `json:",omitempty"`
	// Args runs a program directly (consul exec -shell=false).
	Args []string `json:",omitempty"`
	// Script is written to a file and run (consul exec -).
	Script []byte `json:",omitempty"`
	// Wait is the CLI's quiet period: a heartbeat goes out when the
	// command has written nothing for this long.
	Wait time.Duration
}

// Store is what the runner needs from the replicated store.
type Store interface {
	Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error)
	Apply(ctx context.Context, op kv.Op) (bool, error)
}

// Config configures a Runner.
type Config struct {
	Node   string // this agent's node name; required
	Store  Store  // required
	Logger *slog.Logger
}

// Runner runs remote exec jobs. Safe for concurrent use.
type Runner struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Runner, error) {
	if cfg.Node == "" || cfg.Store == nil {
		return nil, errors.New("rexec: Config.Node and Config.Store are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: log}, nil
}

// Handle runs the job of one "_rexec" event payload, until it ends or ctx
// is done (the command is then killed). Failures are logged, and written
// as exit code 255 once the job is acknowledged, as Consul does.
func (r *Runner) Handle(ctx context.Context, payload []byte) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Session == "" {
		r.log.Warn("remote exec: ignoring an event whose payload is not {\"Prefix\",\"Session\"}", "err", err)
		return
	}
	spec, err := r.spec(ctx, ev)
	if err != nil {
		r.log.Warn("remote exec: no job", "session", ev.Session, "err", err)
		return
	}
	if err := r.write(ctx, ev, ackSuffix, nil); err != nil {
		r.log.Warn("remote exec: could not acknowledge the job", "session", ev.Session, "err", err)
		return
	}
	code := r.run(ctx, ev, spec)
	if err := r.write(ctx, ev, exitSuffix, []byte(strconv.Itoa(code))); err != nil {
		r.log.Warn("remote exec: could not write the exit code", "session", ev.Session, "err", err)
	}
}

// spec reads the job: a stale read first, then a consistent one (Consul's
// order, for scale).
func (r *Runner) spec(ctx context.Context, ev Event) (Spec, error) {
	key := path.Join(ev.Prefix, ev.Session, jobKey)
	var spec Spec
	for _, q := range []kv.QueryOptions{{Stale: true}, {}} {
		_, e, err := r.cfg.Store.Get(ctx, q, key)
		if err != nil {
			return spec, err
		}
		if e != nil {
			if err := json.Unmarshal(e.Value, &spec); err != nil {
				return spec, fmt.Errorf("decode %s: %w", key, err)
			}
			return spec, nil
		}
	}
	return spec, fmt.Errorf("%s is missing (the CLI gave up?)", key)
}

// write locks <prefix>/<session>/<node>/<suffix> with the job's session.
func (r *Runner) write(ctx context.Context, ev Event, suffix string, val []byte) error {
	key := path.Join(ev.Prefix, ev.Session, r.cfg.Node, suffix)
	ok, err := r.cfg.Store.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: key, Value: val, Session: ev.Session})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("write %s: the session %s no longer holds it", key, ev.Session)
	}
	return nil
}

// run runs the command, streaming its output, and returns its exit code
// (255 when it could not run or its output could not be written).
func (r *Runner) run(ctx context.Context, ev Event, spec Spec) int {
	var cmd *exec.Cmd
	switch {
	case len(spec.Args) > 0:
		cmd = exec.CommandContext(ctx, spec.Args[0], spec.Args[1:]...)
	case len(spec.Script) > 0:
		f, err := os.CreateTemp("", "rexec")
		if err != nil {
			r.log.Warn("remote exec: script file", "err", err)
			return 255
		}
		defer os.Remove(f.Name())
		_, werr := f.Write(spec.Script)
		cerr := f.Close()
		if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o750)); err != nil {
			r.log.Warn("remote exec: script file", "err", err)
			return 255
		}
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", f.Name())
	case spec.Command != "":
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", spec.Command)
	default:
		r.log.Warn("remote exec: the job has no command", "session", ev.Session)
		return 255
	}
	r.log.Info("remote exec", "session", ev.Session, "command", cmd.String())
	out := &chunker{full: make(chan struct{}, 1)}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.log.Warn("remote exec: could not start the command", "err", err)
		return 255
	}
	exitCh := make(chan int, 1)
	go func() {
		err := cmd.Wait() // returns once the output is copied into out
		var ee *exec.ExitError
		switch {
		case err == nil:
			exitCh <- 0
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			exitCh <- ee.ExitCode()
		default:
			exitCh <- 1
		}
	}()
	wait := spec.Wait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	flush := time.NewTicker(outputDeadline)
	defer flush.Stop()
	heartbeat := time.NewTimer(wait)
	defer heartbeat.Stop()
	num := 0
	send := func(b []byte) bool {
		if err := r.write(ctx, ev, path.Join(outputDivider, fmt.Sprintf("%05x", num)), b); err != nil {
			r.log.Warn("remote exec: could not write output", "err", err)
			return false
		}
		num++
		heartbeat.Reset(wait)
		return true
	}
	// sendAll sends the buffered output in order, in chunks of at most
	// outputSize; partial says whether a last short chunk goes too.
	sendAll := func(partial bool) bool {
		for _, b := range out.take(partial) {
			if !send(b) {
				return false
			}
		}
		return true
	}
	for {
		select {
		case code := <-exitCh:
			if !sendAll(true) {
				return 255
			}
			return code
		case <-out.full:
			if !sendAll(false) {
				_ = cmd.Process.Kill()
				<-exitCh
				return 255
			}
		case <-flush.C:
			if !sendAll(true) {
				_ = cmd.Process.Kill()
				<-exitCh
				return 255
			}
		case <-heartbeat.C:
			if !send(nil) {
				_ = cmd.Process.Kill()
				<-exitCh
				return 255
			}
		}
	}
}

// chunker collects a command's output; full says a whole chunk is
// buffered.
type chunker struct {
	mu   sync.Mutex
	buf  []byte
	full chan struct{}
}

func (c *chunker) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	n := len(c.buf)
	c.mu.Unlock()
	if n >= outputSize {
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// take cuts the buffered output into chunks of outputSize, with the
// short rest as a last chunk when partial (else it stays buffered).
func (c *chunker) take(partial bool) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for len(c.buf) >= outputSize {
		out = append(out, c.buf[:outputSize:outputSize])
		c.buf = c.buf[outputSize:]
	}
	if partial && len(c.buf) > 0 {
		out = append(out, c.buf)
		c.buf = nil
	}
	if len(c.buf) == 0 {
		c.buf = nil
	}
	return out
}
