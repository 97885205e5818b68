package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder is a list of events from parts running concurrently.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// waiter is a part that records its stop after its context ends.
func waiter(r *recorder, name string, started *sync.WaitGroup) part {
	started.Add(1)
	return part{name: name, run: func(ctx context.Context) error {
		started.Done()
		<-ctx.Done()
		r.add("stop " + name)
		return nil
	}}
}

// TestRunLayersStopsTopDown: layers stop in reverse order, each waiting
// for the one above, whatever ends the run.
func TestRunLayersStopsTopDown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing bool
	}{{"the agent is stopped", false}, {"a part fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			var started sync.WaitGroup
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			layers := []layer{
				{"store", []part{waiter(r, "kv", &started)}},
				{"http", []part{waiter(r, "http", &started)}},
				{"services", []part{waiter(r, "dns", &started)}},
			}
			boom := errors.New("boom")
			if tc.failing {
				layers[2].parts = append(layers[2].parts, part{name: "templates", run: func(context.Context) error {
					started.Wait()
					return boom
				}})
			} else {
				go func() { started.Wait(); cancel() }()
			}
			var cause error
			err := runLayers(ctx, slog.New(slog.DiscardHandler), layers, func(c error) { cause = c })
			want := []string{"stop dns", "stop http", "stop kv"}
			if !slices.Equal(r.events, want) {
				t.Errorf("stop order = %v, want %v", r.events, want)
			}
			if tc.failing {
				if !errors.Is(err, boom) || !strings.Contains(err.Error(), "templates: boom") {
					t.Errorf("runLayers = %v, want the failing part named", err)
				}
				if !errors.Is(cause, boom) {
					t.Errorf("stop cause = %v, want the failure", cause)
				}
			} else if err != nil || !errors.Is(cause, context.Canceled) {
				t.Errorf("runLayers = %v (cause %v), want nil after a stop", err, cause)
			}
		})
	}
}

// TestRunLayersEarlyNil: a part that finishes its work early stops
// nothing.
func TestRunLayersEarlyNil(t *testing.T) {
	r := &recorder{}
	var started sync.WaitGroup
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	layers := []layer{{"membership", []part{
		waiter(r, "leave", &started),
		{name: "retry-join", run: func(context.Context) error { close(done); return nil }},
	}}}
	go func() { <-done; started.Wait(); cancel() }()
	if err := runLayers(ctx, slog.New(slog.DiscardHandler), layers, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.events, []string{"stop leave"}) {
		t.Errorf("events = %v", r.events)
	}
}
