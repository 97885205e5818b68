//go:build unix

package agent

import "golang.org/x/sys/unix"

// diskInfo is the data dir's file system (nil when it cannot be read).
func diskInfo(path string) map[string]any {
	if path == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil
	}
	bs := uint64(st.Bsize)
	total, free := st.Blocks*bs, st.Bavail*bs
	used := total - st.Bfree*bs
	pct := 0.0
	if total > 0 {
		pct = float64(used) / float64(total) * 100
	}
	return map[string]any{"path": path, "total": total, "free": free, "used": used, "usedPercent": pct}
}
