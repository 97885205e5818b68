package template

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

// fileWatch is an inotify watch on a file's directory. A nil *fileWatch
// (inotify unavailable) waits fileCheckInterval instead.
type fileWatch struct {
	f    *os.File
	name string
}

// fileCheckInterval is how often a file is looked at when inotify cannot
// watch it.
const fileCheckInterval = 2 * time.Second

func watchFile(path string) *fileWatch {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	// Not IN_MODIFY: a file being written is read once it is closed
	// (or renamed into place), not half-way.
	const mask = syscall.IN_CLOSE_WRITE | syscall.IN_ATTRIB | syscall.IN_CREATE | syscall.IN_DELETE |
		syscall.IN_MOVED_TO | syscall.IN_MOVED_FROM | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
		syscall.Close(fd)
		return nil
	}
	// A non-blocking descriptor in an *os.File waits in the runtime's
	// poller, so that closing it ends a read in progress.
	return &fileWatch{f: os.NewFile(uintptr(fd), "inotify"), name: filepath.Base(path)}
}

// wait returns after an event in the directory that may concern the
// file, or with ctx's error.
func (w *fileWatch) wait(ctx context.Context) error {
	if w == nil {
		if !sleep(ctx, fileCheckInterval) {
			return ctx.Err()
		}
		return nil
	}
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			// Not expected; look at the file again after a while.
			if !sleep(ctx, fileCheckInterval) {
				return ctx.Err()
			}
			return nil
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			name := string(trimNUL(buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+nameLen]))
			off += syscall.SizeofInotifyEvent + nameLen
			if name == w.name || name == "" || ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				return nil
			}
		}
	}
}

func (w *fileWatch) close() {
	if w != nil {
		w.f.Close()
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
