package template

import (
	"context"
	"fmt"
	"os"
)

// fetchFile is the "blocking query" of file(path): the contents, with the
// modification time (and size) as the index. With a waitIndex it returns
// once the file differs from that index: on Linux woken by inotify on the
// file's directory (which also sees the file replaced by a rename),
// elsewhere by looking every fileCheckInterval, as consul-template does.
func fetchFile(ctx context.Context, path string, waitIndex uint64) (any, uint64, error) {
	for {
		var w *fileWatch
		if waitIndex != 0 {
			// Watch before looking, so that no change falls in between.
			w = watchFile(path)
		}
		st, err := os.Stat(path)
		if err != nil {
			w.close()
			return nil, 0, fmt.Errorf("file %s: %w", path, err)
		}
		if idx := fileIndex(st); waitIndex == 0 || idx != waitIndex {
			w.close()
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, 0, fmt.Errorf("file %s: %w", path, err)
			}
			return string(b), idx, nil
		}
		err = w.wait(ctx)
		w.close()
		if err != nil {
			return nil, 0, err
		}
	}
}

// fileIndex folds the size into the modification time, so that a write
// within the same clock tick still counts as a change.
func fileIndex(st os.FileInfo) uint64 {
	return uint64(st.ModTime().UnixNano()) + uint64(st.Size())
}
