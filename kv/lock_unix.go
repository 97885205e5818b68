//go:build unix

package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir holds an exclusive lock (flock) on dir/LOCK until release. The
// kernel drops it when the process dies, so a kill -9 leaves nothing to
// clean up.
func lockDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kv: lock raft log: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("kv: open raft log %s: it is locked by another process; is another agent running with this -data-dir?", dir)
		}
		return nil, fmt.Errorf("kv: lock raft log %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
