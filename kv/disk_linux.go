package kv

import "syscall"

// fsState reports the file system of dir: read-only (the kind), and the
// bytes free to unprivileged writers. ok is false when it cannot tell.
func fsState(dir string) (kind string, free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "", 0, false
	}
	const stRdonly = 0x1 // ST_RDONLY
	if st.Flags&stRdonly != 0 {
		return DiskReadOnly, 0, true
	}
	return "", st.Bavail * uint64(st.Bsize), true
}
