package agent

import (
	"context"
	"sync"

	"github.com/cairn-dev/cairn/agent/rexec"
	"github.com/hashicorp/go-memdb"
)

// rexecPart runs `consul exec` jobs (agent/rexec) for the "_rexec" user
// events this agent keeps, when disable_remote_exec = false; with the
// default (true, as in Consul) it logs that it ignores them. It reads the
// kept events level-triggered, remembering the IDs it has handled.
func (w *wiring) rexecPart() (part, bool, error) {
	runner, err := rexec.New(rexec.Config{Node: w.cfg.NodeName, Store: w.routerFor(), Logger: w.log})
	if err != nil {
		return part{}, false, err
	}
	events, enabled, log := w.events, w.cfg.EnableRemoteExec, w.log
	return part{"remote exec", func(ctx context.Context) error {
		var jobs sync.WaitGroup
		defer jobs.Wait()
		seen := map[string]bool{}
		for _, ev := range events.List(nil) { // from before this run: not ours to run
			seen[ev.ID] = true
		}
		for {
			ws := memdb.NewWatchSet()
			live := map[string]bool{}
			for _, ev := range events.List(ws) {
				live[ev.ID] = true
				if ev.Name != rexec.EventName || seen[ev.ID] {
					continue
				}
				seen[ev.ID] = true
				if !enabled {
					log.Info("ignoring a remote exec event: remote exec is disabled (disable_remote_exec = true, the default, as in Consul); set disable_remote_exec = false in the agent's config to let consul exec run commands here", "event", ev.ID)
					continue
				}
				payload := ev.Payload
				jobs.Add(1)
				go func() {
					defer jobs.Done()
					runner.Handle(ctx, payload)
				}()
			}
			for id := range seen {
				if !live[id] {
					delete(seen, id)
				}
			}
			if err := ws.WatchCtx(ctx); err != nil {
				return nil
			}
		}
	}}, true, nil
}
