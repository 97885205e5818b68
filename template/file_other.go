//go:build !linux

package template

import (
	"context"
	"time"
)

// fileCheckInterval is how often a watched file is looked at: there is no
// inotify here, and consul-template looks every 3 seconds.
const fileCheckInterval = 2 * time.Second

// fileWatch waits by looking again after fileCheckInterval.
type fileWatch struct{}

func watchFile(string) *fileWatch { return nil }

func (w *fileWatch) wait(ctx context.Context) error {
	if !sleep(ctx, fileCheckInterval) {
		return ctx.Err()
	}
	return nil
}

func (w *fileWatch) close() {}
