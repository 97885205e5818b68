package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/template"
)

// A reloader takes a new configuration in two steps: prepare checks it
// and builds what it needs, without changing anything running; the
// commit it returns switches over and cannot fail. Reload prepares every
// reloader before it commits any, so a bad new configuration changes
// nothing.
type reloader func(cfg Config) (commit func(), err error)

// onReload registers a part's reloader for this Run.
func (a *Agent) onReload(name string, r reloader) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reloaders == nil {
		a.reloaders = map[string]reloader{}
	}
	a.reloaders[name] = r
}

// Reload re-reads the configuration (Config.ReloadConfig: the same
// flags and files the agent started with) and applies what can change
// while running: the log level, the templates (-template,
// -template-config, -template-check, -template-wait), and whatever parts
// register a reloader. Everything is checked first; an invalid new
// configuration is refused with the reason and the old one keeps running.
// SIGHUP, `cairn reload` and PUT /v1/agent/reload call it. Settings that
// need a restart (ports, addresses, data dir, server) keep their
// running values.
func (a *Agent) Reload(ctx context.Context) error {
	if a.cfg.ReloadConfig == nil {
		return errors.New("this agent has no configuration to re-read (it was not started from flags or config files)")
	}
	a.mu.Lock()
	running := a.stop != nil
	reloaders := make(map[string]reloader, len(a.reloaders))
	for k, v := range a.reloaders {
		reloaders[k] = v
	}
	a.mu.Unlock()
	if !running {
		return errReloadUnavailable
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, err := a.cfg.ReloadConfig()
	if err != nil {
		return fmt.Errorf("the new configuration was refused and the running one kept: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("the new configuration was refused and the running one kept: %w", err)
	}
	level, err := ParseLogLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("the new configuration was refused and the running one kept: %w", err)
	}
	var commits []func()
	for name, r := range reloaders {
		commit, err := r(cfg)
		if err != nil {
			return fmt.Errorf("the new configuration was refused and the running one kept: %s: %w", name, err)
		}
		commits = append(commits, commit)
	}
	if logs := logging.Of(a.log); logs != nil {
		logs.SetLevel(level)
	}
	for _, c := range commits {
		c()
	}
	a.log.Info("configuration reloaded", "log_level", cfg.LogLevel, "parts", len(commits))
	return nil
}

// templateSupervisor runs the current template runner and swaps it for
// a new one on reload: the old one stops (its files stay as rendered)
// before the new one starts, so two runners never write one file.
type templateSupervisor struct {
	current *template.Runner // nil: no templates
	next    chan *template.Runner
	tel     *telemetry
}

// replace hands the supervisor a new runner (nil: no templates); a
// replacement not yet taken is replaced again.
func (s *templateSupervisor) replace(r *template.Runner) {
	for {
		select {
		case s.next <- r:
			return
		default:
		}
		select {
		case <-s.next:
		default:
		}
	}
}

func (s *templateSupervisor) run(ctx context.Context) error {
	cur := s.current
	for {
		var (
			done   chan error
			cancel context.CancelFunc = func() {}
		)
		if cur != nil {
			s.tel.templates(cur)
			var rctx context.Context
			rctx, cancel = context.WithCancel(ctx)
			done = make(chan error, 1)
			go func(r *template.Runner) { done <- r.Run(rctx) }(cur)
		}
		select {
		case <-ctx.Done():
			cancel()
			if done != nil {
				<-done
			}
			return nil
		case err := <-done:
			cancel()
			if err != nil {
				return err
			}
			cur = nil
		case r := <-s.next:
			cancel()
			if done != nil {
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					return err
				}
			}
			cur = r
		}
	}
}
