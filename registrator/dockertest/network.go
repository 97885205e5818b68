package dockertest

import (
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
		if _, err := e.Client.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			e.t.Errorf("dockertest: cleanup: remove network %s: %v", name, err)
		}
	})
	return name
}
