package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Defaults of the limits a server keeps.
const (
	// DefaultMaxBlockingQueries is how many blocking queries one server
	// parks at once by default.
	DefaultMaxBlockingQueries = 16384
	// DefaultDiskReserve is the free space below which writes are
	// refused: more than one full Raft batch of the largest values.
	DefaultDiskReserve = 16 << 20
)

// Kinds of disk condition, as DiskError and DiskCondition name them.
const (
	DiskFull     = "disk full"
	DiskReadOnly = "read-only file system"
	DiskIOError  = "I/O error"
)

// ErrDisk is what every DiskError is (errors.Is).
var ErrDisk = errors.New("disk error")

// DiskError is a write refused or failed because the data dir's disk
// cannot take it. It was not applied: the leader failed to store the
// entry before replicating it, or refused it before trying.
type DiskError struct {
	Kind string // DiskFull, DiskReadOnly or DiskIOError
	Path string // the data dir (or file) concerned
	Err  error  // the system's error, or nil for a refusal by the reserve
	// Text, when set, is the whole message (an error that came from
	// another server).
	Text string
}

func (e *DiskError) Error() string {
	if e.Text != "" {
		return e.Text
	}
	what := ""
	switch e.Kind {
	case DiskFull:
		what = "free space on that file system"
	case DiskReadOnly:
		what = "remount the file system read-write"
	default:
		what = "check the disk (dmesg) and the file system"
	}
	detail := ""
	if e.Err != nil {
		detail = ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s in the data dir %s%s; writes are refused until it is fixed (%s; they resume on their own), reads still answer", e.Kind, e.Path, detail, what)
}

func (e *DiskError) Is(target error) bool { return target == ErrDisk }
func (e *DiskError) Unwrap() error        { return e.Err }

// DiskCondition is a disk fault this server is in: the kind, since when,
// and the last error seen.
type DiskCondition struct {
	Kind  string
	Since time.Time
	Error string
	// fromStore: a store's write failed (cleared by the next one that
	// succeeds), rather than the file system check (cleared by a check).
	fromStore bool
}

// diskKind names the disk condition err is, or "" when it is none.
func diskKind(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return DiskFull
	case errors.Is(err, syscall.EROFS):
		return DiskReadOnly
	case errors.Is(err, syscall.EIO):
		return DiskIOError
	}
	// Stores that report an error as text (raft-boltdb's "unable to
	// store logs within log store, err: %q") lose the errno: its words
	// tell.
	msg := err.Error()
	for _, k := range []struct {
		errno syscall.Errno
		kind  string
	}{{syscall.ENOSPC, DiskFull}, {syscall.EDQUOT, DiskFull}, {syscall.EROFS, DiskReadOnly}, {syscall.EIO, DiskIOError}} {
		if strings.Contains(msg, k.errno.Error()) {
			return k.kind
		}
	}
	return ""
}

// diskGuard watches the Raft stores' disk: it names the errors they
// meet, refuses writes while a condition lasts (probing whether it is
// over, at most every probeEvery), and sees a nearly full or read-only
// file system before Raft does.
type diskGuard struct {
	dir     string
	reserve uint64
	log     *slog.Logger

	mu        sync.Mutex
	stopping  <-chan struct{} // the server's shutdown; nil while opening
	cond      *DiskCondition
	lastCheck time.Time
	lastErr   error         // the answer of the last check
	changed   chan struct{} // closed when cond comes, changes kind or goes

	// The last look at the file system, shared by the writes of the
	// next fsFresh (see examineFS); stat and now are fsState and
	// time.Now but in tests.
	fsMu  sync.Mutex
	fsAt  time.Time
	fsErr error
	stat  func(dir string) (kind string, free uint64, ok bool)
	now   func() time.Time
}

// probeEvery bounds how often the disk is examined while writes come.
const probeEvery = 250 * time.Millisecond

// fsFresh is how long one statfs answers for every write. Under
// concurrent writers a statfs per write was 4% of a server's CPU; in
// 2 ms a server takes a few dozen writes, far less than the reserve, and
// a file system that fills or turns read-only in between still fails
// the store's own write, which the guard then names.
const fsFresh = 2 * time.Millisecond

func newDiskGuard(dir string, reserve uint64, log *slog.Logger) *diskGuard {
	return &diskGuard{dir: dir, reserve: reserve, log: log, changed: make(chan struct{}), stat: fsState, now: time.Now}
}

// Changed is closed when the condition next comes, changes kind or ends.
func (g *diskGuard) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

func (g *diskGuard) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// Condition is the disk condition now, nil when the disk is fine.
func (g *diskGuard) Condition() *DiskCondition {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		return nil
	}
	c := *g.cond
	return &c
}

// note records err when it is a disk condition and returns it as a
// DiskError; other errors come back as they are.
func (g *diskGuard) note(err error) error {
	if err == nil {
		return nil
	}
	kind := diskKind(err)
	if kind == "" {
		return err
	}
	de := &DiskError{Kind: kind, Path: g.dir, Err: err}
	g.set(de, true)
	return de
}

// stored records a store write that succeeded: a condition a store's
// error set is over.
func (g *diskGuard) stored() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond != nil && g.cond.fromStore {
		g.clearLocked()
	}
}

func (g *diskGuard) set(de *DiskError, fromStore bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil || g.cond.Kind != de.Kind {
		g.log.Error("kv: disk condition: writes are refused until it is fixed; reads still answer", "kind", de.Kind, "dir", g.dir, "err", de.Err)
		g.cond = &DiskCondition{Kind: de.Kind, Since: time.Now()}
		g.notifyLocked()
	}
	g.cond.fromStore = g.cond.fromStore || fromStore
	g.cond.Error = de.Error()
	g.lastErr = de
	g.lastCheck = time.Now()
}

func (g *diskGuard) clearLocked() {
	g.log.Info("kv: disk condition over; writes resume", "kind", g.cond.Kind, "dir", g.dir, "lasted", time.Since(g.cond.Since).Round(time.Millisecond))
	g.cond = nil
	g.lastErr = nil
	g.notifyLocked()
}

// refusal is the error for a write this server cannot lead because of
// its disk: the condition, checked again first; nil when there is none.
func (g *diskGuard) refusal() error {
	if err := g.check(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		return nil
	}
	return &DiskError{Kind: g.cond.Kind, Path: g.dir, Text: g.cond.Error}
}

// check decides whether a write may go to Raft: the file system must be
// writable with the reserve free (a statfs, shared by the writes of
// fsFresh), and after a disk error a probe write must succeed (at most
// every probeEvery; the answer is kept until then).
func (g *diskGuard) check() error {
	if err := g.examineFS(); err != nil {
		var de *DiskError
		if errors.As(err, &de) {
			g.set(de, false)
			return de
		}
	}
	g.mu.Lock()
	if g.cond != nil && time.Since(g.lastCheck) < probeEvery {
		err := g.lastErr
		g.mu.Unlock()
		return err
	}
	g.lastCheck = time.Now()
	hadCond := g.cond != nil
	g.mu.Unlock()

	var err error
	if hadCond {
		err = g.probe()
	}
	var de *DiskError
	if errors.As(err, &de) {
		g.set(de, false)
		return de
	}
	// The disk takes writes (or the check itself failed for another
	// reason): let Raft try. A condition a store's error set lasts
	// until a store write succeeds.
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastErr = nil
	if g.cond != nil && !g.cond.fromStore {
		g.clearLocked()
	}
	return nil
}

// examineFS looks at the file system: read-only, or below the reserve.
// A look less than fsFresh old answers for it.
func (g *diskGuard) examineFS() error {
	g.fsMu.Lock()
	defer g.fsMu.Unlock()
	if now := g.now(); now.Sub(g.fsAt) >= fsFresh {
		g.fsErr, g.fsAt = g.lookAtFS(), now
	}
	return g.fsErr
}

func (g *diskGuard) lookAtFS() error {
	if kind, free, ok := g.stat(g.dir); ok {
		if kind != "" {
			return &DiskError{Kind: kind, Path: g.dir}
		}
		if free < g.reserve {
			return &DiskError{Kind: DiskFull, Path: g.dir, Err: fmt.Errorf("%d bytes free, below the %d bytes kept in reserve", free, g.reserve)}
		}
	}
	return nil
}

// probe writes and syncs a small file, as Raft would.
func (g *diskGuard) probe() error {
	path := filepath.Join(g.dir, ".disk-probe")
	defer os.Remove(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return g.wrap(err)
	}
	_, werr := f.Write(make([]byte, 64<<10))
	serr := f.Sync()
	cerr := f.Close()
	return g.wrap(errors.Join(werr, serr, cerr))
}

func (g *diskGuard) wrap(err error) error {
	if err == nil {
		return nil
	}
	if kind := diskKind(err); kind != "" {
		return &DiskError{Kind: kind, Path: g.dir, Err: err}
	}
	return err
}

// DiskChanged is closed when the disk condition next comes, changes kind
// or ends.
func (s *Server) DiskChanged() <-chan struct{} { return s.disk.Changed() }

// RecheckDisk examines the disk now (at most every probeEvery) and
// returns the condition: without writes nothing else looks, so a health
// check that waits for the condition to end asks with this.
func (s *Server) RecheckDisk() *DiskCondition {
	s.disk.check()
	return s.disk.Condition()
}

// logStore wraps Raft's log store so that its disk errors are named and
// noted.
func (g *diskGuard) logStore(l raft.LogStore) raft.LogStore { return &guardedLogs{LogStore: l, g: g} }

type guardedLogs struct {
	raft.LogStore
	g *diskGuard
}

func (l *guardedLogs) StoreLog(log *raft.Log) error {
	return l.g.result(l.LogStore.StoreLog(log))
}

func (l *guardedLogs) StoreLogs(logs []*raft.Log) error {
	return l.g.result(l.LogStore.StoreLogs(logs))
}

// result notes a store write's outcome.
func (g *diskGuard) result(err error) error {
	if err == nil {
		g.stored()
		return nil
	}
	return g.note(err)
}
func (l *guardedLogs) DeleteRange(min, max uint64) error {
	return l.g.note(l.LogStore.DeleteRange(min, max))
}

// stableStore wraps Raft's stable store. Raft panics when it cannot
// persist its term or vote; on a disk condition the write is retried
// instead until the disk takes it (or the server stops), so a full disk
// stalls an election on this server rather than crashing the agent.
func (g *diskGuard) stableStore(s raft.StableStore) raft.StableStore {
	return &guardedStable{StableStore: s, g: g}
}

type guardedStable struct {
	raft.StableStore
	g *diskGuard
}

func (s *guardedStable) Set(key, val []byte) error {
	return s.g.retry(func() error { return s.StableStore.Set(key, val) })
}

func (s *guardedStable) SetUint64(key []byte, val uint64) error {
	return s.g.retry(func() error { return s.StableStore.SetUint64(key, val) })
}

// patient makes stable-store writes wait out disk conditions from now
// on, until stopping closes; before it (while the server opens) they
// fail at once, so a start on a full disk says so.
func (g *diskGuard) patient(stopping <-chan struct{}) {
	g.mu.Lock()
	g.stopping = stopping
	g.mu.Unlock()
}

func (g *diskGuard) retry(write func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := g.note(write())
		if err != nil && !errors.Is(err, ErrDisk) {
			// A store that met a disk error can be left broken by
			// it (bolt after a failed remap: "database isn't
			// correctly mapped"); while a condition lasts, its
			// errors are that condition, waited out like it, not a
			// crash of the agent.
			g.mu.Lock()
			if g.cond != nil {
				err = &DiskError{Kind: g.cond.Kind, Path: g.dir, Err: err}
			}
			g.mu.Unlock()
		}
		if err == nil || !errors.Is(err, ErrDisk) {
			return err
		}
		g.mu.Lock()
		stopping := g.stopping
		g.mu.Unlock()
		if stopping == nil {
			return err
		}
		select {
		case <-stopping:
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
