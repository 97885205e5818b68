package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// faultyLogs is the log store with a switch: while fail holds an errno,
// every write fails with it, as a full, read-only or failing disk makes
// bolt fail. Real disks are in the system test (a small tmpfs); this
// injects at the log-store boundary, in addition.
type faultyLogs struct {
	raft.LogStore
	fail atomic.Pointer[syscall.Errno]
}

func (f *faultyLogs) err() error {
	if e := f.fail.Load(); e != nil {
		return fmt.Errorf("write /data/raft/raft.db: %w", *e)
	}
	return nil
}

func (f *faultyLogs) StoreLog(l *raft.Log) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.LogStore.StoreLog(l)
}

func (f *faultyLogs) StoreLogs(ls []*raft.Log) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.LogStore.StoreLogs(ls)
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "a leader that answers consistent reads", 10*time.Second, func() error {
		_, _, err := s.Get(context.Background(), QueryOptions{Consistent: true}, "ready")
		return err
	})
	return s
}

func waitFor(t *testing.T, what string, within time.Duration, try func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond) // poll: no event tells when Raft re-elects
	}
}

// TestDiskErrorsAreNamedAndWritesResume: a write that meets a full,
// read-only or failing disk fails with that condition named (never "no
// leader" or "no quorum"), and was not applied; the server shows the
// condition; reads answer from memory meanwhile; once the disk takes
// writes again, writes resume by themselves and the condition clears.
func TestDiskErrorsAreNamedAndWritesResume(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		kind  string
	}{
		{syscall.ENOSPC, DiskFull},
		{syscall.EROFS, DiskReadOnly},
		{syscall.EIO, DiskIOError},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			logs := &faultyLogs{}
			cfg := DefaultConfig("s1", t.TempDir(), "127.0.0.1:0")
			cfg.Bootstrap, cfg.Fast = true, true
			cfg.DiskReserve = 1 // the real disk's free space is not under test here
			cfg.wrapLogStore = func(l raft.LogStore) raft.LogStore { logs.LogStore = l; return logs }
			s := startServer(t, cfg)
			ctx := context.Background()
			if _, err := s.Apply(ctx, Op{Verb: VerbSet, Key: "k", Value: []byte("before")}); err != nil {
				t.Fatal(err)
			}

			logs.fail.Store(&tc.errno)
			_, err := s.Apply(WithWriteID(ctx, "w1"), Op{Verb: VerbSet, Key: "k", Value: []byte("during")})
			var de *DiskError
			if !errors.As(err, &de) || de.Kind != tc.kind || !errors.Is(err, ErrDisk) {
				t.Fatalf("write on a failing disk: err = %v; want a DiskError of kind %q", err, tc.kind)
			}
			if errors.Is(err, ErrNoLeader) || strings.Contains(err.Error(), "quorum") {
				t.Fatalf("disk error reported as a leader problem: %v", err)
			}
			if c := s.DiskCondition(); c == nil || c.Kind != tc.kind {
				t.Fatalf("DiskCondition() = %+v; want kind %q", c, tc.kind)
			}
			// Reads answer from memory: a stale one at once, a default
			// one once the server leads again (it stepped down when
			// its log store failed, and re-elects itself).
			if _, e, err := s.Get(ctx, QueryOptions{Stale: true}, "k"); err != nil || string(e.Value) != "before" {
				t.Fatalf("stale read during the disk fault = %v, %v; want \"before\"", e, err)
			}
			waitFor(t, "a default read during the disk fault", 10*time.Second, func() error {
				_, e, err := s.Get(ctx, QueryOptions{}, "k")
				if err == nil && string(e.Value) != "before" {
					return fmt.Errorf("read %q; the failed write must not have been applied", e.Value)
				}
				return err
			})

			// Every write while it lasts names it, leader or not.
			for i := range 2 {
				_, err := s.Apply(ctx, Op{Verb: VerbSet, Key: "k", Value: []byte("during")})
				if !errors.As(err, &de) || de.Kind != tc.kind {
					t.Fatalf("write %d during the disk fault: err = %v; want a DiskError of kind %q", i+2, err, tc.kind)
				}
			}

			logs.fail.Store(nil)
			waitFor(t, "writes resuming once the disk takes them", 10*time.Second, func() error {
				_, err := s.Apply(ctx, Op{Verb: VerbSet, Key: "k", Value: []byte("after")})
				return err
			})
			if c := s.DiskCondition(); c != nil {
				t.Fatalf("DiskCondition() = %+v after writes resumed; want nil", c)
			}
		})
	}
}

// TestWriteIDAppliesOnce: a write sent again under the same write ID
// (its first outcome was lost) answers the first result and changes
// nothing: a CAS retried after it succeeded reports true, not false, and
// a lock acquire likewise; a session create answers the first session.
func TestWriteIDAppliesOnce(t *testing.T) {
	cfg := DefaultConfig("s1", t.TempDir(), "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	s := startServer(t, cfg)
	ctx := context.Background()

	set := WithWriteID(ctx, "set-1")
	for i := range 2 {
		if ok, err := s.Apply(set, Op{Verb: VerbCAS, Key: "k", Index: 0, Value: []byte("v1")}); err != nil || !ok {
			t.Fatalf("cas attempt %d = %v, %v; want true (the same write)", i+1, ok, err)
		}
	}
	_, e, _ := s.Get(ctx, QueryOptions{}, "k")
	if _, err := s.Apply(ctx, Op{Verb: VerbSet, Key: "k", Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	// The first write sent again after another one: nothing changes.
	if ok, err := s.Apply(set, Op{Verb: VerbCAS, Key: "k", Index: 0, Value: []byte("v1")}); err != nil || !ok {
		t.Fatalf("late repeat = %v, %v; want the first result, true", ok, err)
	}
	_, e2, _ := s.Get(ctx, QueryOptions{}, "k")
	if string(e2.Value) != "v2" || e2.ModifyIndex <= e.ModifyIndex {
		t.Fatalf("after the repeat k = %q@%d; want v2, written after v1@%d", e2.Value, e2.ModifyIndex, e.ModifyIndex)
	}

	create := WithWriteID(ctx, "session-1")
	id1, err := s.CreateSession(create, Session{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := s.CreateSession(create, Session{Node: "n1"})
	if err != nil || id2 != id1 {
		t.Fatalf("repeated create = %q, %v; want the first session %q", id2, err, id1)
	}
	_, list, _ := s.Sessions(ctx, QueryOptions{})
	if len(list) != 1 {
		t.Fatalf("%d sessions after a repeated create; want 1", len(list))
	}
	lock := WithWriteID(ctx, "lock-1")
	for i := range 2 {
		if ok, err := s.Apply(lock, Op{Verb: VerbLock, Key: "l", Session: id1}); err != nil || !ok {
			t.Fatalf("lock attempt %d = %v, %v; want true", i+1, ok, err)
		}
	}
	_, e3, _ := s.Get(ctx, QueryOptions{}, "l")
	if e3.LockIndex != 1 {
		t.Fatalf("LockIndex = %d after one acquire sent twice; want 1", e3.LockIndex)
	}

	// The remembered IDs survive a snapshot and restore.
	snap, err := s.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f := newFSM(s.log)
	if err := f.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if w, ok := f.applied.get("set-1"); !ok || !w.OK {
		t.Fatalf("after restore, write set-1 = %+v, %v; want remembered as true", w, ok)
	}
}

// TestValidateKey pins the keys refused, and that a write refuses them.
func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a/b/c", true},
		{"ünïcode/ключ", true},
		{"with space", true},
		{"nul\x00byte", false},
		{"new\nline", false},
		{"tab\there", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"bad\xffutf8", false},
		{strings.Repeat("k", MaxKeyLength), true},
		{strings.Repeat("k", MaxKeyLength+1), false},
	} {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidRequest)) {
			t.Errorf("ValidateKey(%.40q) = %v; want ok=%v", tc.key, err, tc.ok)
		}
	}
}

// memSink is a snapshot sink in memory.
type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string            { return "mem" }
func (m *memSink) Cancel() error         { return nil }
func (m *memSink) Close() error          { return nil }
func (m *memSink) reader() io.ReadCloser { return io.NopCloser(bytes.NewReader(m.Bytes())) }

// TestBlockingQueryLimit: past MaxBlockingQueries parked queries, one
// more is refused with ErrTooManyQueries; a query that does not block
// is not counted.
func TestBlockingQueryLimit(t *testing.T) {
	cfg := DefaultConfig("s1", t.TempDir(), "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	cfg.MaxBlockingQueries = 1
	s := startServer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, _, err := s.Get(ctx, QueryOptions{}, "k")
	if err != nil {
		t.Fatal(err)
	}
	parked := make(chan error, 1)
	go func() {
		_, _, err := s.Get(ctx, QueryOptions{MinIndex: m.Index, MaxWait: time.Minute}, "k")
		parked <- err
	}()
	waitFor(t, "the first query parked", 10*time.Second, func() error {
		if s.parked.Load() != 1 {
			return errors.New("not parked yet")
		}
		return nil
	})
	_, _, err = s.Get(ctx, QueryOptions{MinIndex: m.Index, MaxWait: time.Minute}, "k")
	if !errors.Is(err, ErrTooManyQueries) || !strings.Contains(err.Error(), "max_blocking_queries") {
		t.Fatalf("second blocking query = %v; want ErrTooManyQueries naming the limit", err)
	}
	if _, _, err := s.Get(ctx, QueryOptions{}, "k"); err != nil {
		t.Fatalf("a plain read past the limit: %v", err)
	}
	cancel()
	<-parked
}

// TestFullDiskLeaderHandsOver: a leader whose disk is below the reserve
// hands leadership to a server whose disk takes writes; the write it
// refused says so (not-leader: send it again), and the cluster goes on
// taking writes.
func TestFullDiskLeaderHandsOver(t *testing.T) {
	var servers []*Server
	var peers []Peer
	for i := range 3 {
		cfg := DefaultConfig(fmt.Sprintf("s%d", i), t.TempDir(), "127.0.0.1:0")
		cfg.Fast = true
		if i == 0 {
			cfg.DiskReserve = 1 << 62 // no disk has that much free: s0's is "full"
		}
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		servers = append(servers, s)
		peers = append(peers, Peer{ID: s.NodeID(), Address: s.Addr()})
	}
	for _, s := range servers {
		// A server the first one reached before its own turn has the
		// configuration already, and refuses to bootstrap: that is fine.
		if err := s.BootstrapCluster(peers); err != nil && !s.HasState() {
			t.Fatal(err)
		}
	}
	full := servers[0]
	waitFor(t, "s0 leading", 20*time.Second, func() error {
		if full.IsLeader() {
			return nil
		}
		for _, s := range servers {
			if s.IsLeader() {
				s.raft.LeadershipTransferToServer(raft.ServerID(full.NodeID()), raft.ServerAddress(full.Addr()))
			}
		}
		return errors.New("s0 does not lead yet")
	})
	_, err := full.Apply(context.Background(), Op{Verb: VerbSet, Key: "k", Value: []byte("v")})
	if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), DiskFull) || !strings.Contains(err.Error(), "handed") {
		t.Fatalf("write on a leader with a full disk = %v; want not-leader naming the full disk and the hand-over", err)
	}
	waitFor(t, "a write through the new leader", 20*time.Second, func() error {
		for _, s := range servers[1:] {
			if s.IsLeader() {
				_, err := s.Apply(context.Background(), Op{Verb: VerbSet, Key: "k", Value: []byte("v")})
				return err
			}
		}
		return errors.New("no leader among the servers with room")
	})
}

// TestDiskKind: the errno names the condition, also when a store passed
// the error on as text only (raft-boltdb formats it with %q; seen with a
// real failing loop device and a real read-only ext4).
func TestDiskKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("write: %w", syscall.ENOSPC), DiskFull},
		{fmt.Errorf("write: %w", syscall.EDQUOT), DiskFull},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EROFS}, DiskReadOnly},
		{fmt.Errorf("sync: %w", syscall.EIO), DiskIOError},
		{errors.New(`unable to store logs within log store, err: "file sync error: sync /d/raft/raft.db: input/output error"`), DiskIOError},
		{errors.New(`unable to store logs within log store, err: "mmap allocate error: read-only file system"`), DiskReadOnly},
		{errors.New(`unable to store logs within log store, err: "write /d/raft/raft.db: no space left on device"`), DiskFull},
		{errors.New("connection refused"), ""},
	} {
		if got := diskKind(tc.err); got != tc.want {
			t.Errorf("diskKind(%q) = %q; want %q", tc.err, got, tc.want)
		}
	}
}

// TestDiskGuardSharesOneLookAtTheFileSystem: the writes of fsFresh share
// one statfs; the first write after it looks again and sees the reserve
// gone.
func TestDiskGuardSharesOneLookAtTheFileSystem(t *testing.T) {
	g := newDiskGuard(t.TempDir(), 100, slog.New(slog.DiscardHandler))
	clock := time.Unix(1e9, 0)
	g.now = func() time.Time { return clock }
	looks, free := 0, uint64(1000)
	g.stat = func(string) (string, uint64, bool) { looks++; return "", free, true }

	for range 5 {
		if err := g.check(); err != nil {
			t.Fatalf("check with room: %v", err)
		}
	}
	if looks != 1 {
		t.Fatalf("5 writes at once looked at the file system %d times; want 1", looks)
	}

	free = 10
	clock = clock.Add(fsFresh - time.Nanosecond)
	if err := g.check(); err != nil {
		t.Fatalf("check inside the window = %v; want the shared look's answer (room)", err)
	}
	clock = clock.Add(time.Nanosecond)
	if err := g.check(); !errors.Is(err, ErrDisk) || !strings.Contains(err.Error(), DiskFull) {
		t.Fatalf("check after the window, below the reserve = %v; want disk full", err)
	}
	if looks != 2 {
		t.Fatalf("looks = %d; want 2", looks)
	}
}
