package dockertest

import (
	"context"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// NetworkSpec is a user-defined network.
type NetworkSpec struct {
	// Name is appended to the engine's Prefix; "" picks n<seq>.
	Name string
	// Driver is "bridge" (default) or "overlay" (needs InitSwarm).
	Driver string
	// Attachable lets plain containers join an overlay network.
	Attachable bool
	Labels     map[string]string
}

// Network creates a network and returns its name; it is removed when the
// test ends (after the containers made later, which cleanups remove
// first).
func (e *Engine) Network(spec NetworkSpec) string {
	e.t.Helper()
	name := e.Name(spec.Name)
	driver := spec.Driver
	if driver == "" {
		driver = "bridge"
	}
	res, err := e.Client.NetworkCreate(e.t.Context(), name, client.NetworkCreateOptions{
		Driver: driver, Attachable: spec.Attachable, Labels: e.labels(spec.Labels),
	})
	if err != nil {
		e.t.Fatalf("dockertest: create network %s (%s): %v", name, driver, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		// A removed Swarm service's tasks may still hold endpoints on an
		// overlay network for a moment: retry those for a while.
		err := retry(ctx, 30*time.Second, func() error {
			_, err := e.Client.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{})
			return err
		}, func(err error) bool { return strings.Contains(err.Error(), "active endpoints") })
		if err != nil && !isNotFound(err) {
			e.t.Errorf("dockertest: cleanup: remove network %s: %v", name, err)
		}
	})
	return name
}

// retry calls f until it succeeds, returns an error again says is final,
// or within passes (then it returns the last error). For cleanups, which
// run after the test's context (and so WaitFor) is done.
func retry(ctx context.Context, within time.Duration, f func() error, again func(error) bool) error {
	deadline := time.Now().Add(within)
	interval := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || !again(err) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		interval = min(2*interval, time.Second)
	}
}
