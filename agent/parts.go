package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// A part is one running piece of the agent: the kv store, the HTTP API,
// the catalog, DNS, templates, ... Its run blocks until its context ends
// and then stops the piece, returning nil; an error (before or after the
// end) stops the whole agent. A part whose work is done (a retry-join
// that succeeded) may return nil early.
type part struct {
	name string
	run  func(ctx context.Context) error
}

// A layer is parts that start together and stop together. Layers start
// bottom-up and stop top-down, so that a part never outlives what it
// uses: DNS and templates stop before the catalog they read, the catalog
// before the agent leaves the cluster, the HTTP API after the leave, the
// store last.
type layer struct {
	name  string
	parts []part
}

// runLayers runs layers (bottom first) until stop is done or a part
// fails, then stops them top-down, each layer's parts together, waiting
// for one layer to end before stopping the next. onStop runs when the
// stop begins, with its cause. The error names every part that failed.
func runLayers(stop context.Context, log *slog.Logger, layers []layer, onStop func(cause error)) error {
	failed := make(chan struct{})
	var (
		failOnce sync.Once
		mu       sync.Mutex
		errs     []error
	)
	fail := func(p string, err error) {
		mu.Lock()
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
		mu.Unlock()
		failOnce.Do(func() { close(failed) })
	}

	cancels := make([]context.CancelFunc, len(layers))
	waits := make([]*sync.WaitGroup, len(layers))
	for i, l := range layers {
		// Each layer's context ends only when the stop reaches it, not
		// when the agent's does.
		ctx, cancel := context.WithCancel(context.WithoutCancel(stop))
		cancels[i] = cancel
		waits[i] = new(sync.WaitGroup)
		for _, p := range l.parts {
			waits[i].Go(func() {
				if err := p.run(ctx); err != nil {
					fail(p.name, err)
				}
			})
		}
	}

	var cause error
	select {
	case <-stop.Done():
		cause = context.Cause(stop)
	case <-failed:
		mu.Lock()
		cause = errs[0]
		mu.Unlock()
	}
	if onStop != nil {
		onStop(cause)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		cancels[i]()
		waits[i].Wait()
		log.Debug("agent: layer stopped", "layer", layers[i].name)
	}
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}
