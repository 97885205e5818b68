package registrator

import (
	"context"
	"errors"
)

// state is the sync loop's bookkeeping (see sync.go).
type state struct{}

func newState() *state { return &state{} }

// Run keeps the registry in step with the engine until ctx is done; it
// returns nil on a clean stop.
func (r *Registrator) Run(ctx context.Context) error {
	return errors.New("registrator.Run: not implemented yet")
}
