//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is held (flock) for as long as an agent uses the data dir.
// Two agents on one data dir would otherwise meet inside bolt, whose
// file lock waits forever. The kernel drops the lock when the process
// dies, so a kill -9 leaves nothing to clean up.
const lockFile = "agent.lock"

func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w; is -data-dir=%s writable by this user?", err, dir)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("-data-dir=%s is in use by another cairn agent (it holds %s); stop that agent or give this one its own -data-dir", dir, path)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
