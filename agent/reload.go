package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"

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
// while running: the log level, the service and check definitions of
// the config files, the templates (-template, -template-config,
// -template-check, -template-wait), and whatever parts register a
// reloader. Everything is checked first; an invalid new
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

// definitionsReloader re-reads the service and check definitions of the
// config files, as consul reload does: new and changed ones are
// registered, the ones the files no longer hold are deregistered, and
// whatever was registered through the API is left alone. Every
// definition is parsed before anything changes.
func (w *wiring) definitionsReloader() reloader {
	type fromFiles struct{ services, checks map[string]bool }
	ids := func(cfg Config) (fromFiles, []catalog.ServiceDefinition, []checks.Definition, error) {
		f := fromFiles{services: map[string]bool{}, checks: map[string]bool{}}
		var svcs []catalog.ServiceDefinition
		var chks []checks.Definition
		for _, b := range cfg.Services {
			def, err := parseServiceDefinition(b)
			if err != nil {
				return f, nil, nil, fmt.Errorf("service definition: %w", err)
			}
			f.services[cmp.Or(def.Service.ID, def.Service.Name)] = true
			svcs = append(svcs, def)
		}
		for _, b := range cfg.Checks {
			def, err := parseCheckDefinition(b)
			if err != nil {
				return f, nil, nil, fmt.Errorf("check definition: %w", err)
			}
			f.checks[cmp.Or(def.ID, def.Name)] = true
			chks = append(chks, def)
		}
		return f, svcs, chks, nil
	}
	var mu sync.Mutex
	current, _, _, _ := ids(w.cfg) // the start registered them (loadDefinitions)
	return func(cfg Config) (func(), error) {
		next, svcs, chks, err := ids(cfg)
		if err != nil {
			return nil, err
		}
		return func() {
			mu.Lock()
			defer mu.Unlock()
			for id := range current.services {
				if !next.services[id] {
					if err := w.cat.DeregisterService(id); err != nil && !errors.Is(err, catalog.ErrNotFound) {
						w.log.Warn("reload: deregister a service the config files dropped", "service", id, "err", err)
					}
				}
			}
			for id := range current.checks {
				if !next.checks[id] {
					if err := w.cat.DeregisterCheck(id); err != nil && !errors.Is(err, catalog.ErrNotFound) {
						w.log.Warn("reload: deregister a check the config files dropped", "check", id, "err", err)
					}
				}
			}
			for _, def := range svcs {
				if err := w.cat.RegisterService(def, false); err != nil {
					w.log.Error("reload: register a service of the config files", "service", def.Service.Name, "err", err)
				}
			}
			for _, def := range chks {
				if err := w.cat.RegisterCheck(def); err != nil {
					w.log.Error("reload: register a check of the config files", "check", def.Name, "err", err)
				}
			}
			current = next
		}, nil
	}
}
