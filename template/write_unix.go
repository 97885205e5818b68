//go:build unix

package template

import (
	"os"
	"syscall"
)

// sameOwner gives path the owner and group of st (a file being replaced).
// It is a no-op when they already match, so that it only needs
// privileges when there is something to change.
func sameOwner(path string, st os.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if sys.Uid == uint32(os.Getuid()) && sys.Gid == uint32(os.Getgid()) {
		return nil
	}
	return os.Lchown(path, int(sys.Uid), int(sys.Gid))
}
