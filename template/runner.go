package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Runner renders a set of templates and keeps them current: it watches
// exactly the dependencies the templates read, re-executes a template
// only when one of its dependencies changed, writes a destination only
// when its contents changed, and runs a command only after its
// destination changed (and, with a check, the check accepted it).
type Runner struct {
	cfg     Config
	log     *slog.Logger
	entries []*entry
	ran     atomic.Bool

	mu    sync.Mutex
	stats Stats
}

// Stats count what a Runner did since it started; safe to read while it
// runs (expose them as metrics).
type Stats struct {
	Renders         int // destinations written (or printed, with Dry)
	RenderErrors    int // executions or writes that failed
	CheckFailures   int // results a check refused (the previous file stayed)
	Commands        int // commands run
	CommandFailures int // commands that failed or timed out
	QueryErrors     int // Source queries that failed (they are retried)
	Dependencies    int // dependencies being watched
}

// entry is one template and its state in the runner's loop.
type entry struct {
	cfg  TemplateConfig
	t    *tmpl
	wait Wait

	used    map[dependency]struct{} // from the last execution
	stale   bool                    // a dependency changed: execute again
	missing string                  // last logged missing set, to log changes only

	// The output of the last render that went through (written or found
	// up to date).
	last    []byte
	hasLast bool

	// A complete output waiting for its quiescence timer.
	pending  []byte
	hasOut   bool
	first    time.Time // first change of this quiet period
	due      time.Time // when to render, unless more changes come
	deadline time.Time // first + Max: the latest render time

	done bool // rendered (or found up to date) at least once
}

// ErrCheckFailed is what the error of a render that its check command
// refused Is; the previous file was kept (errors.Is(err, ErrCheckFailed)).
var ErrCheckFailed = errors.New("check failed")

// checkError is a render refused by its check.
type checkError struct{ msg string }

func (e *checkError) Error() string        { return e.msg }
func (e *checkError) Is(target error) bool { return target == ErrCheckFailed }

// New validates cfg and parses the templates: a syntax error is reported
// here, as file:line:col. It starts nothing.
func New(cfg Config) (*Runner, error) {
	if cfg.Source == nil {
		return nil, errors.New("template: Config.Source is nil; pass the agent's in-process source or an HTTPSource")
	}
	if len(cfg.Templates) == 0 {
		return nil, errors.New("template: no templates; give at least one -template or a template {} block in -config")
	}
	if cfg.Wait.Min < 0 || cfg.Wait.Max < cfg.Wait.Min {
		return nil, fmt.Errorf("template: wait %s: max must be at least min, and neither negative", cfg.Wait)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DryOutput == nil {
		cfg.DryOutput = os.Stdout
	}
	r := &Runner{cfg: cfg, log: cfg.Logger}
	dests := map[string]string{}
	for _, tc := range cfg.Templates {
		if err := tc.validate(cfg.Dry); err != nil {
			return nil, err
		}
		if tc.Destination != "" {
			if other, ok := dests[tc.Destination]; ok {
				return nil, fmt.Errorf("templates %s and %s both render to %s; give each its own destination", other, tc.name(), tc.Destination)
			}
			dests[tc.Destination] = tc.name()
		}
		contents := tc.Contents
		if tc.Source != "" {
			b, err := os.ReadFile(tc.Source)
			if err != nil {
				return nil, fmt.Errorf("read template: %w", err)
			}
			contents = string(b)
		}
		t, err := parse(tc.name(), contents, parseOptions{
			LeftDelim:     tc.LeftDelim,
			RightDelim:    tc.RightDelim,
			ErrMissingKey: tc.ErrMissingKey,
			Env:           cfg.Env,
		})
		if err != nil {
			return nil, err
		}
		wait := cfg.Wait
		if tc.Wait != nil {
			wait = *tc.Wait
		}
		if cfg.Once {
			wait = Wait{}
		}
		r.entries = append(r.entries, &entry{cfg: tc, t: t, wait: wait, stale: true})
	}
	return r, nil
}

// Stats returns the counters so far.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Runner) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

// Run renders until ctx ends, and returns nil then. With Once it returns
// as soon as every template was rendered once and the commands ran, with
// the errors of that pass (errors.Is(err, ErrCheckFailed) when a check
// refused a result). Without Once, failures are logged and counted in
// Stats, and Run keeps going: the next change renders again. Run may be
// called once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.ran.CompareAndSwap(false, true) {
		return errors.New("template: Run called twice; create a new Runner")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newWatcher(r.cfg.Source, r.log, r.cfg.Once)
	defer w.stop()

	var (
		onceErrs []error
		onceCmds []*command // with Once, the commands run at the end
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		now := time.Now()
		var batch []*entry
		for _, e := range r.entries {
			if e.stale {
				e.stale = false
				if err := r.execute(ctx, w, e, now); err != nil {
					if r.cfg.Once {
						return err
					}
				}
			}
			if e.hasOut && !e.due.After(now) {
				batch = append(batch, e)
			}
		}
		r.retain(w)
		if len(batch) > 0 {
			cmds, errs := r.renderBatch(ctx, batch)
			onceErrs = append(onceErrs, errs...)
			if r.cfg.Once {
				onceCmds = mergeCommands(onceCmds, cmds)
			} else {
				r.runCommands(ctx, cmds)
			}
		}
		if r.cfg.Once && r.allDone() {
			onceErrs = append(onceErrs, r.runCommands(ctx, onceCmds)...)
			return errors.Join(onceErrs...)
		}

		// Sleep until new data, the next due render, or the end.
		var timeout <-chan time.Time
		if next, ok := r.nextDue(); ok {
			timer.Reset(time.Until(next))
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.changed:
			changed := w.drain()
			for _, e := range r.entries {
				for d := range changed {
					if _, ok := e.used[d]; ok {
						e.stale = true
						break
					}
				}
			}
		case <-timeout:
		}
		timer.Stop()
	}
}

// execute runs e's template against the views, starts views for what it
// read, and, when the output is complete, schedules it: at once, or after
// the quiescence wait.
func (r *Runner) execute(ctx context.Context, w *watcher, e *entry, now time.Time) error {
	res, err := e.t.execute(w.recall)
	if res != nil {
		// Even a failed execution watches what it read, so that the data
		// that fixes it triggers a new one.
		e.used = res.used
		w.watch(ctx, res.used)
	}
	if err != nil && res != nil && !res.Complete() {
		// Probably the missing data's fault ({{ index (service "web") 0 }}
		// before the service is known): wait for it, as for any template
		// that misses data, and see whether the error stays.
		r.log.Debug("template failed while data is missing", "template", e.cfg.name(), "err", err)
		err = nil
	}
	if err != nil {
		r.count(func(s *Stats) { s.RenderErrors++ })
		r.log.Error("template failed", "template", e.cfg.name(), "err", err)
		e.pending, e.hasOut, e.first = nil, false, time.Time{}
		return err
	}
	if !res.Complete() {
		if missing := strings.Join(res.Missing(), ", "); missing != e.missing {
			// Info when a template starts waiting; as the answers come
			// in one by one, the shrinking rest is debug.
			level := slog.LevelDebug
			if e.missing == "" {
				level = slog.LevelInfo
			}
			e.missing = missing
			r.log.Log(ctx, level, "waiting for data", "template", e.cfg.name(), "missing", missing)
		}
		// Nothing is rendered until the data is back.
		e.pending, e.hasOut, e.first = nil, false, time.Time{}
		return nil
	}
	e.missing = ""
	switch {
	case e.hasOut && bytes.Equal(res.Output, e.pending):
		// New data, same output (a check's output, an index): not a
		// change, so it does not extend the quiet period.
		return nil
	case !e.hasOut && e.hasLast && bytes.Equal(res.Output, e.last):
		// Same as the last render: nothing to wait for. Still compare
		// with the file, as consul-template does on every change.
		e.pending, e.hasOut, e.due = res.Output, true, now
		return nil
	}
	e.pending, e.hasOut = res.Output, true
	if !e.wait.Enabled() {
		e.due = now
		return nil
	}
	if e.first.IsZero() {
		e.first, e.deadline = now, now.Add(e.wait.Max)
	}
	e.due = now.Add(e.wait.Min)
	if e.due.After(e.deadline) {
		e.due = e.deadline
	}
	return nil
}

// retain stops the views no template reads any more.
func (r *Runner) retain(w *watcher) {
	keep := make(map[dependency]struct{})
	for _, e := range r.entries {
		for d := range e.used {
			keep[d] = struct{}{}
		}
	}
	w.retain(keep)
	n, qe := w.len(), w.queryErrors()
	r.count(func(s *Stats) { s.Dependencies, s.QueryErrors = n, qe })
}

func (r *Runner) nextDue() (time.Time, bool) {
	var next time.Time
	for _, e := range r.entries {
		if e.hasOut && (next.IsZero() || e.due.Before(next)) {
			next = e.due
		}
	}
	return next, !next.IsZero()
}

func (r *Runner) allDone() bool {
	for _, e := range r.entries {
		if !e.done {
			return false
		}
	}
	return true
}

// command is one command to run after a batch, with the templates that
// asked for it.
type command struct {
	line      string
	timeout   time.Duration
	templates []string // the templates that changed
}

// renderBatch writes the due templates and returns the distinct commands
// of those that changed, in the order the templates are configured.
func (r *Runner) renderBatch(ctx context.Context, batch []*entry) ([]*command, []error) {
	var (
		errs []error
		cmds []*command
	)
	for _, e := range batch {
		out := e.pending
		e.pending, e.hasOut, e.first = nil, false, time.Time{}
		changed, err := r.render(ctx, e, out)
		e.done = true
		if err != nil {
			e.last, e.hasLast = nil, false
			errs = append(errs, err)
			continue
		}
		e.last, e.hasLast = out, true
		if changed && e.cfg.Command != "" && !r.cfg.Dry {
			cmds = mergeCommands(cmds, []*command{{line: e.cfg.Command, timeout: e.cfg.CommandTimeout, templates: []string{e.cfg.name()}}})
		}
	}
	return cmds, errs
}

// mergeCommands adds the commands of more to cmds, once each.
func mergeCommands(cmds, more []*command) []*command {
	for _, c := range more {
		if i := slices.IndexFunc(cmds, func(x *command) bool { return x.line == c.line }); i >= 0 {
			cmds[i].templates = append(cmds[i].templates, c.templates...)
			continue
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// runCommands runs each command, one after the other, and returns (and
// logs) their failures.
func (r *Runner) runCommands(ctx context.Context, cmds []*command) []error {
	var errs []error
	for _, c := range cmds {
		r.count(func(s *Stats) { s.Commands++ })
		res, err := runShell(ctx, c.line, c.timeout, r.cfg.Env, r.cfg.CommandOutput)
		if err != nil {
			r.count(func(s *Stats) { s.CommandFailures++ })
			err = fmt.Errorf("command %q (after %s changed) %w%s", c.line, strings.Join(c.templates, ", "), err, quote(res))
			r.log.Error("command failed", "command", c.line, "err", err)
			errs = append(errs, err)
			continue
		}
		r.log.Info("command ran", "command", c.line, "templates", strings.Join(c.templates, ", "))
	}
	return errs
}

// quote is ": <first line of output>", or nothing.
func quote(res *shellResult) string {
	if res == nil {
		return ""
	}
	if l := res.firstLine(); l != "" {
		return ": " + l
	}
	return ""
}

// render puts out at e's destination (or prints it, with Dry) and reports
// whether that changed anything.
func (r *Runner) render(ctx context.Context, e *entry, out []byte) (bool, error) {
	dest := e.cfg.Destination
	if r.cfg.Dry {
		if dest != "" {
			if old, err := os.ReadFile(dest); err == nil && bytes.Equal(old, out) {
				return false, nil
			}
		}
		if _, err := fmt.Fprintf(r.cfg.DryOutput, "> %s\n%s", dest, out); err != nil {
			return false, fmt.Errorf("render %s: print: %w", e.cfg.name(), err)
		}
		r.count(func(s *Stats) { s.Renders++ })
		return true, nil
	}
	in := installation{
		dest:   dest,
		perms:  e.cfg.Perms,
		backup: e.cfg.Backup,
		warn: func(msg string, err error) {
			r.log.Warn(msg, "template", e.cfg.name(), "destination", dest, "err", err)
		},
	}
	var checkRes *shellResult
	if e.cfg.Check != "" {
		in.check = func() error {
			env := append(slices.Clip(r.cfg.Env), "CAIRN_TEMPLATE_FILE="+dest)
			var err error
			checkRes, err = runShell(ctx, e.cfg.Check, e.cfg.CheckTimeout, env, r.cfg.CommandOutput)
			return err
		}
	}
	changed, err := in.install(out)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		r.count(func(s *Stats) { s.CheckFailures++ })
		kept := "kept the previous " + dest
		switch {
		case rej.undo != nil:
			kept = "and putting back the previous " + dest + " failed (" + rej.undo.Error() + "): it holds the rejected result"
		case !rej.hadPrev:
			kept = "removed the new " + dest + " (there was no previous one)"
		}
		cerr := &checkError{fmt.Sprintf("render %s: %s rejected the result (%v), %s%s",
			e.cfg.name(), e.cfg.Check, rej.check, kept, quote(checkRes))}
		r.log.Error("check failed", "template", e.cfg.name(), "destination", dest, "err", cerr)
		return false, cerr
	case err != nil:
		r.count(func(s *Stats) { s.RenderErrors++ })
		err = fmt.Errorf("render %s: %w", e.cfg.name(), err)
		r.log.Error("render failed", "template", e.cfg.name(), "err", err)
		return false, err
	case changed:
		r.count(func(s *Stats) { s.Renders++ })
		r.log.Info("rendered", "template", e.cfg.name(), "destination", dest, "bytes", len(out))
	default:
		r.log.Debug("up to date", "template", e.cfg.name(), "destination", dest)
	}
	return changed, nil
}
