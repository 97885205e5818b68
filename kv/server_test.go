package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
)

var ctx = context.Background()

func put(t *testing.T, s *kv.Server, key, value string) {
	t.Helper()
	ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte(value)})
	if err != nil || !ok {
		t.Fatalf("set %q = %v, %v; want true, nil", key, ok, err)
	}
}

func get(t *testing.T, s *kv.Server, key string) *kv.Entry {
	t.Helper()
	_, e, err := s.Get(ctx, kv.QueryOptions{}, key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return e
}

// TestWriteSemantics pins each KV verb to Consul's behaviour, one step
// after another on the same server.
func TestWriteSemantics(t *testing.T) {
	s := kvtest.NewServer(t)
	sid, err := s.CreateSession(ctx, kv.Session{Name: "holder", LockDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateSession(ctx, kv.Session{Name: "other", LockDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "a", "1")
	a := get(t, s, "a")

	steps := []struct {
		name      string
		op        kv.Op
		wantOK    bool
		wantErr   string
		wantValue string // value of op.Key after the step; "<nil>" = absent
		wantLock  string
	}{
		{name: "cas on stale index fails", op: kv.Op{Verb: kv.VerbCAS, Key: "a", Value: []byte("2"), Index: a.ModifyIndex + 100}, wantValue: "1"},
		{name: "cas 0 on existing key fails", op: kv.Op{Verb: kv.VerbCAS, Key: "a", Value: []byte("2")}, wantValue: "1"},
		{name: "cas on current index wins", op: kv.Op{Verb: kv.VerbCAS, Key: "a", Value: []byte("2"), Index: a.ModifyIndex}, wantOK: true, wantValue: "2"},
		{name: "cas 0 creates a new key", op: kv.Op{Verb: kv.VerbCAS, Key: "b", Value: []byte("new")}, wantOK: true, wantValue: "new"},
		{name: "lock needs an existing session", op: kv.Op{Verb: kv.VerbLock, Key: "l", Session: "no-such-session"}, wantErr: `invalid session "no-such-session"`, wantValue: "<nil>"},
		{name: "lock acquires", op: kv.Op{Verb: kv.VerbLock, Key: "l", Value: []byte("mine"), Session: sid}, wantOK: true, wantValue: "mine", wantLock: sid},
		{name: "lock again by holder updates value", op: kv.Op{Verb: kv.VerbLock, Key: "l", Value: []byte("still"), Session: sid}, wantOK: true, wantValue: "still", wantLock: sid},
		{name: "lock by another session fails", op: kv.Op{Verb: kv.VerbLock, Key: "l", Value: []byte("theirs"), Session: other}, wantValue: "still", wantLock: sid},
		{name: "plain set keeps the holder", op: kv.Op{Verb: kv.VerbSet, Key: "l", Value: []byte("set")}, wantOK: true, wantValue: "set", wantLock: sid},
		{name: "unlock by another session fails", op: kv.Op{Verb: kv.VerbUnlock, Key: "l", Session: other}, wantValue: "set", wantLock: sid},
		{name: "unlock by holder releases", op: kv.Op{Verb: kv.VerbUnlock, Key: "l", Value: []byte("free"), Session: sid}, wantOK: true, wantValue: "free"},
		{name: "delete-cas on stale index fails", op: kv.Op{Verb: kv.VerbDeleteCAS, Key: "b", Index: 1}, wantValue: "new"},
		{name: "delete removes", op: kv.Op{Verb: kv.VerbDelete, Key: "b"}, wantOK: true, wantValue: "<nil>"},
		{name: "delete-cas of a missing key succeeds", op: kv.Op{Verb: kv.VerbDeleteCAS, Key: "b", Index: 7}, wantOK: true, wantValue: "<nil>"},
		{name: "empty key is refused", op: kv.Op{Verb: kv.VerbSet, Key: ""}, wantErr: "key is empty", wantValue: "<nil>"},
		{name: "a read verb is not a write", op: kv.Op{Verb: kv.VerbGet, Key: "a"}, wantErr: `"get" is not a KV write verb`, wantValue: "2"},
	}
	for _, st := range steps {
		ok, err := s.Apply(ctx, st.op)
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) || !errors.Is(err, kv.ErrInvalidRequest) {
				t.Fatalf("%s: Apply(%+v) error = %v, want ErrInvalidRequest containing %q", st.name, st.op, err, st.wantErr)
			}
		} else if err != nil {
			t.Fatalf("%s: Apply(%+v): %v", st.name, st.op, err)
		}
		if ok != st.wantOK {
			t.Fatalf("%s: Apply(%+v) = %v, want %v", st.name, st.op, ok, st.wantOK)
		}
		e := get(t, s, st.op.Key)
		value, lock := "<nil>", ""
		if e != nil {
			value, lock = string(e.Value), e.Session
		}
		if value != st.wantValue || lock != st.wantLock {
			t.Fatalf("%s: after it %q = %q locked by %q, want %q locked by %q", st.name, st.op.Key, value, lock, st.wantValue, st.wantLock)
		}
	}
	if l := get(t, s, "l"); l.LockIndex != 1 {
		t.Errorf("LockIndex after one acquisition = %d, want 1", l.LockIndex)
	}
}

func TestListKeysAndIndexes(t *testing.T) {
	s := kvtest.NewServer(t)
	for _, k := range []string{"app/a", "app/b/c", "app/b/d", "app/e/f/g", "other"} {
		put(t, s, k, k)
	}
	_, keys, err := s.Keys(ctx, kv.QueryOptions{}, "app/", "/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"app/a", "app/b/", "app/e/"}, keys); diff != "" {
		t.Errorf("Keys(app/, /) mismatch (-want +got):\n%s", diff)
	}
	m1, entries, err := s.List(ctx, kv.QueryOptions{}, "app/b/")
	if err != nil || len(entries) != 2 {
		t.Fatalf("List(app/b/) = %d entries, %v; want 2", len(entries), err)
	}
	// Deleting a key raises the prefix's index, so a watcher sees it.
	if _, err := s.Apply(ctx, kv.Op{Verb: kv.VerbDelete, Key: "app/b/c"}); err != nil {
		t.Fatal(err)
	}
	m2, entries, _ := s.List(ctx, kv.QueryOptions{}, "app/b/")
	if len(entries) != 1 || m2.Index <= m1.Index {
		t.Errorf("after delete: %d entries, index %d (was %d); want 1 entry and a higher index", len(entries), m2.Index, m1.Index)
	}
	// A write elsewhere leaves the prefix's index alone: no spurious wake-ups.
	put(t, s, "other", "x")
	m3, _, _ := s.List(ctx, kv.QueryOptions{}, "app/b/")
	if m3.Index != m2.Index {
		t.Errorf("index of app/b/ moved from %d to %d on a write to another key", m2.Index, m3.Index)
	}
	// A missing key answers the table index, which is never 0.
	m4, e, _ := s.Get(ctx, kv.QueryOptions{}, "missing")
	if e != nil || m4.Index == 0 || !m4.KnownLeader {
		t.Errorf("Get(missing) = %v, meta %+v; want nil with index > 0 and a known leader", e, m4)
	}
}

func TestBlockingQuery(t *testing.T) {
	s := kvtest.NewServer(t)
	put(t, s, "watch/a", "1")
	m, _, _ := s.List(ctx, kv.QueryOptions{}, "watch/")

	t.Run("wakes on a change under the prefix", func(t *testing.T) {
		type answer struct {
			m   kv.QueryMeta
			es  []*kv.Entry
			err error
		}
		got := make(chan answer, 1)
		go func() {
			m2, es, err := s.List(ctx, kv.QueryOptions{MinIndex: m.Index, MaxWait: time.Minute}, "watch/")
			got <- answer{m2, es, err}
		}()
		put(t, s, "watch/b", "2")
		select {
		case a := <-got:
			if a.err != nil || a.m.Index <= m.Index || len(a.es) != 2 {
				t.Fatalf("blocking List = %d entries at index %d, %v; want 2 entries above index %d", len(a.es), a.m.Index, a.err, m.Index)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocking List did not wake within 10s of a write under its prefix")
		}
	})

	t.Run("times out with the same index", func(t *testing.T) {
		m, _, _ := s.List(ctx, kv.QueryOptions{}, "watch/")
		m2, _, err := s.List(ctx, kv.QueryOptions{MinIndex: m.Index, MaxWait: 50 * time.Millisecond}, "watch/")
		if err != nil || m2.Index != m.Index {
			t.Fatalf("timed-out List = index %d, %v; want %d, nil", m2.Index, err, m.Index)
		}
	})

	t.Run("returns at once for an old index", func(t *testing.T) {
		m2, _, err := s.Get(ctx, kv.QueryOptions{MinIndex: 1, MaxWait: time.Minute}, "watch/a")
		if err != nil || m2.Index <= 1 {
			t.Fatalf("Get with MinIndex 1 = index %d, %v", m2.Index, err)
		}
	})

	t.Run("ends when the caller goes away", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, _, err := s.Get(cctx, kv.QueryOptions{MinIndex: 1 << 40, MaxWait: time.Minute}, "watch/a")
			done <- err
		}()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled blocking Get = %v, want context.Canceled", err)
		}
	})
}

func TestConcurrentCASExactlyOneWins(t *testing.T) {
	s := kvtest.NewServer(t)
	put(t, s, "counter", "0")
	idx := get(t, s, "counter").ModifyIndex
	const n = 16
	var (
		wins atomic.Int32
		wg   sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbCAS, Key: "counter", Value: fmt.Appendf(nil, "%d", i), Index: idx})
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d of %d CAS writers at the same index won, want exactly 1", got, n)
	}
}

func TestTxn(t *testing.T) {
	s := kvtest.NewServer(t)
	put(t, s, "t/a", "1")
	a := get(t, s, "t/a")

	t.Run("all or nothing", func(t *testing.T) {
		_, res, errs, err := s.Txn(ctx, kv.QueryOptions{}, []kv.Op{
			{Verb: kv.VerbSet, Key: "t/new", Value: []byte("x")},
			{Verb: kv.VerbCAS, Key: "t/a", Value: []byte("2"), Index: a.ModifyIndex + 1000},
			{Verb: kv.VerbCheckNotExists, Key: "t/a"},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []kv.TxnError{
			{OpIndex: 1, What: `failed to set key "t/a", index is stale`},
			{OpIndex: 2, What: `key "t/a" exists`},
		}
		if diff := cmp.Diff(want, errs); diff != "" || res != nil {
			t.Errorf("Txn errors mismatch (-want +got):\n%s results: %v", diff, res)
		}
		if e := get(t, s, "t/new"); e != nil {
			t.Errorf("t/new = %q after a rolled-back txn, want absent", e.Value)
		}
	})

	t.Run("commits and returns entries without values for writes", func(t *testing.T) {
		_, res, errs, err := s.Txn(ctx, kv.QueryOptions{}, []kv.Op{
			{Verb: kv.VerbCAS, Key: "t/a", Value: []byte("2"), Index: a.ModifyIndex},
			{Verb: kv.VerbSet, Key: "t/b", Value: []byte("b")},
			{Verb: kv.VerbGet, Key: "t/b"},
			{Verb: kv.VerbDelete, Key: "t/none"},
		})
		if err != nil || errs != nil {
			t.Fatalf("Txn: %v %v", err, errs)
		}
		if len(res) != 3 || res[0].KV.Value != nil || string(res[2].KV.Value) != "b" || res[0].KV.ModifyIndex != res[1].KV.ModifyIndex {
			t.Fatalf("Txn results = %+v; want 3 results in one index, values only for get", res)
		}
	})

	t.Run("reads only are answered locally", func(t *testing.T) {
		m, res, errs, err := s.Txn(ctx, kv.QueryOptions{}, []kv.Op{{Verb: kv.VerbGetTree, Key: "t/"}, {Verb: kv.VerbGet, Key: "t/zzz"}})
		if err != nil || len(errs) != 1 || errs[0].What != `key "t/zzz" doesn't exist` || res != nil || m.Index == 0 {
			t.Fatalf("read Txn = %v, %+v, %v, meta %+v", res, errs, err, m)
		}
	})

	t.Run("unknown verb", func(t *testing.T) {
		_, _, _, err := s.Txn(ctx, kv.QueryOptions{}, []kv.Op{{Verb: "frobnicate", Key: "x"}})
		if !errors.Is(err, kv.ErrInvalidRequest) || !strings.Contains(err.Error(), `unknown KV verb "frobnicate"`) {
			t.Fatalf("Txn(frobnicate) = %v", err)
		}
	})
}

func TestSessionEndReleasesOrDeletesLocks(t *testing.T) {
	s := kvtest.NewServer(t)
	for _, tc := range []struct {
		behavior  string
		wantValue string
	}{
		{kv.BehaviorRelease, "held"},
		{kv.BehaviorDelete, "<nil>"},
	} {
		t.Run(tc.behavior, func(t *testing.T) {
			key := "lock/" + tc.behavior
			sid, err := s.CreateSession(ctx, kv.Session{Behavior: tc.behavior, LockDelay: time.Hour / 100})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: key, Value: []byte("held"), Session: sid}); !ok || err != nil {
				t.Fatalf("lock = %v, %v", ok, err)
			}
			if err := s.DestroySession(ctx, sid); err != nil {
				t.Fatal(err)
			}
			e := get(t, s, key)
			value := "<nil>"
			if e != nil {
				value = string(e.Value)
				if e.Session != "" {
					t.Errorf("%s still locked by %s after its session ended", key, e.Session)
				}
			}
			if value != tc.wantValue {
				t.Errorf("%s after session end = %q, want %q", key, value, tc.wantValue)
			}
			// The lock-delay keeps another session from taking it at once.
			other, _ := s.CreateSession(ctx, kv.Session{})
			if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: key, Session: other}); ok || err != nil {
				t.Errorf("lock within lock-delay = %v, %v; want false", ok, err)
			}
			// So does a transaction's, with Consul's error for that op.
			_, res, errs, err := s.Txn(ctx, kv.QueryOptions{}, []kv.Op{
				{Verb: kv.VerbSet, Key: key + "/other", Value: []byte("v")},
				{Verb: kv.VerbLock, Key: key, Value: []byte("taken"), Session: other},
			})
			want := []kv.TxnError{{OpIndex: 1, What: fmt.Sprintf("failed to lock key %q due to lock delay", key)}}
			if err != nil || res != nil || !slices.Equal(errs, want) {
				t.Errorf("txn lock within lock-delay = %v, %v, %v; want %v", res, errs, err, want)
			}
			if e := get(t, s, key); e != nil && e.Session == other {
				t.Errorf("the transaction took %s within its lock-delay", key)
			}
			if e := get(t, s, key+"/other"); e != nil {
				t.Errorf("the refused transaction wrote %s", e.Key)
			}
			if _, info, _ := s.SessionInfo(ctx, kv.QueryOptions{}, sid); info != nil {
				t.Errorf("session %s still listed after destroy", sid)
			}
		})
	}
}

func TestSessionValidation(t *testing.T) {
	s := kvtest.NewServer(t)
	for _, tc := range []struct {
		sess kv.Session
		want string
	}{
		{kv.Session{Behavior: "explode"}, `invalid Behavior "explode"; use "release" or "delete"`},
		{kv.Session{TTL: "5s"}, `session TTL "5s" is out of range; it must be between 10s and 24h0m0s`},
		{kv.Session{TTL: "soon"}, `session TTL "soon" is not a duration`},
		{kv.Session{LockDelay: 2 * time.Minute}, `LockDelay 2m0s is out of range`},
	} {
		_, err := s.CreateSession(ctx, tc.sess)
		if !errors.Is(err, kv.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateSession(%+v) = %v, want ErrInvalidRequest containing %q", tc.sess, err, tc.want)
		}
	}
	sid, err := s.CreateSession(ctx, kv.Session{Name: "n", TTL: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	_, info, _ := s.SessionInfo(ctx, kv.QueryOptions{}, sid)
	want := &kv.Session{ID: sid, Name: "n", Node: "test-node", TTL: "10s", Behavior: "release", NodeChecks: []string{"serfHealth"}}
	if diff := cmp.Diff(want, info, cmpIgnoreIndexes); diff != "" {
		t.Errorf("session defaults mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.RenewSession(ctx, "nope"); !errors.Is(err, kv.ErrSessionNotFound) {
		t.Errorf("RenewSession(nope) = %v, want ErrSessionNotFound", err)
	}
}

var cmpIgnoreIndexes = cmp.FilterPath(func(p cmp.Path) bool {
	s := p.String()
	return s == "CreateIndex" || s == "ModifyIndex"
}, cmp.Ignore())

// TestSnapshotRestartAndCompaction writes enough to trigger snapshots,
// restarts on the same data dir and checks the data and that the log was
// truncated behind the snapshot.
func TestSnapshotRestartAndCompaction(t *testing.T) {
	dir := t.TempDir()
	cfg := kv.DefaultConfig("snap", dir, "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	cfg.SnapshotThreshold, cfg.TrailingLogs = 100, 10

	ctxRun, cancel := context.WithCancel(ctx)
	s, err := kv.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctxRun) }()
	kvtest.WaitLeader(t, s, 10*time.Second)
	const n = 300
	for i := range n {
		put(t, s, fmt.Sprintf("snap/%03d", i), fmt.Sprint(i))
	}
	sid, _ := s.CreateSession(ctx, kv.Session{Name: "survivor"})
	if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: "snap/lock", Session: sid}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	first := s.Raft().Stats()["last_snapshot_index"]
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	snaps, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot directory written")
	}

	s2 := kvtest.Start(t, cfg)
	_, entries, err := s2.List(ctx, kv.QueryOptions{}, "snap/")
	if err != nil || len(entries) != n+1 {
		t.Fatalf("after restart List(snap/) = %d entries, %v; want %d", len(entries), err, n+1)
	}
	if e := get(t, s2, "snap/lock"); e.Session != sid {
		t.Errorf("lock holder after restart = %q, want %q", e.Session, sid)
	}
	firstLog, err := s2.FirstLogIndex()
	if err != nil {
		t.Fatal(err)
	}
	if firstLog <= 1 {
		t.Errorf("first log index after snapshot %s = %d; want the log truncated", first, firstLog)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("damaged log file", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "raft"), 0o700)
		os.WriteFile(filepath.Join(dir, "raft", "raft.db"), []byte(strings.Repeat("not a bolt file ", 512)), 0o600)
		cfg := kv.DefaultConfig("x", dir, "127.0.0.1:0")
		_, err := kv.Open(cfg)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "raft", "raft.db")) || !strings.Contains(err.Error(), "move it away") {
			t.Fatalf("Open on a damaged raft.db = %v; want an error naming the file and what to do", err)
		}
	})
	t.Run("data dir is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o600)
		_, err := kv.Open(kv.DefaultConfig("x", f, "127.0.0.1:0"))
		if err == nil || !strings.Contains(err.Error(), "create data dir") {
			t.Fatalf("Open on a file = %v", err)
		}
	})
	t.Run("data dir in use", func(t *testing.T) {
		dir := t.TempDir()
		cfg := kv.DefaultConfig("a", dir, "127.0.0.1:0")
		cfg.Bootstrap = true
		kvtest.Start(t, cfg)
		_, err := kv.Open(kv.DefaultConfig("b", dir, "127.0.0.1:0"))
		if err == nil || !strings.Contains(err.Error(), "is another agent running with this -data-dir?") {
			t.Fatalf("second Open on a data dir in use = %v", err)
		}
	})
	t.Run("missing settings", func(t *testing.T) {
		_, err := kv.Open(kv.Config{NodeID: "x", BindAddr: "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "DataDir is empty") {
			t.Fatalf("Open without DataDir = %v", err)
		}
	})
}

// TestSessionTTL: a session that is not renewed ends between TTL and
// 2×TTL after its last renewal, releasing its locks; renewals keep it.
func TestSessionTTL(t *testing.T) {
	const ttl = 200 * time.Millisecond
	s := kvtest.NewServer(t, func(c *kv.Config) { c.SessionTTLMin = ttl })

	kept, err := s.CreateSession(ctx, kv.Session{TTL: ttl.String()})
	if err != nil {
		t.Fatal(err)
	}
	expiring, err := s.CreateSession(ctx, kv.Session{TTL: ttl.String(), LockDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: "ttl/lock", Session: expiring}); !ok || err != nil {
		t.Fatalf("lock = %v, %v", ok, err)
	}
	m, _, _ := s.Get(ctx, kv.QueryOptions{}, "ttl/lock")
	start := time.Now()

	// Renew one session at TTL/2 while waiting, on the store's own watch,
	// for the other's lock to be released.
	renew := time.NewTicker(ttl / 2)
	defer renew.Stop()
	released := make(chan time.Duration, 1)
	go func() {
		idx := m.Index
		for {
			m, e, err := s.Get(ctx, kv.QueryOptions{MinIndex: idx, MaxWait: 10 * time.Second}, "ttl/lock")
			if err != nil {
				return
			}
			if e != nil && e.Session == "" {
				released <- time.Since(start)
				return
			}
			idx = m.Index
		}
	}()
	var after time.Duration
	for after == 0 {
		select {
		case <-renew.C:
			if _, err := s.RenewSession(ctx, kept); err != nil {
				t.Fatalf("renew: %v", err)
			}
		case after = <-released:
		case <-time.After(10 * time.Second):
			t.Fatal("the unrenewed session's lock was not released within 10s")
		}
	}
	if after < ttl {
		t.Errorf("lock released %v after the last renewal, before the TTL %v", after, ttl)
	}
	if _, info, _ := s.SessionInfo(ctx, kv.QueryOptions{}, expiring); info != nil {
		t.Errorf("expired session %s still listed", expiring)
	}
	if _, info, _ := s.SessionInfo(ctx, kv.QueryOptions{}, kept); info == nil {
		t.Errorf("renewed session %s expired", kept)
	}
	t.Logf("unrenewed %v session ended after %v", ttl, after)
}

// TestRestoreEndsBlockingQueries: a snapshot restore replaces the state,
// often with data at indexes the clients have already seen; a query
// parked on the old state answers with the restored data at once, as
// Consul's do, instead of waiting for an index above its own.
func TestRestoreEndsBlockingQueries(t *testing.T) {
	s := kvtest.NewServer(t)
	put(t, s, "w", "old")
	meta, rc, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		put(t, s, "w", "new")
	}
	m, _, err := s.Get(ctx, kv.QueryOptions{}, "w")
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		e   *kv.Entry
		err error
	}
	parked := make(chan answer, 1)
	go func() {
		_, e, err := s.Get(ctx, kv.QueryOptions{MinIndex: m.Index, MaxWait: time.Minute}, "w")
		parked <- answer{e, err}
	}()
	deadline, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		if s.BlockingQueries(ws) == 1 {
			break
		}
		if err := ws.WatchCtx(deadline); err != nil {
			t.Fatal("the query did not park within 10s")
		}
	}
	if err := s.Restore(ctx, meta, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-parked:
		if a.err != nil || a.e == nil || string(a.e.Value) != "old" {
			t.Errorf("the parked query answered %+v, %v; want the restored value old", a.e, a.err)
		}
	case <-deadline.Done():
		t.Fatal("the parked query was still waiting 10s after the restore")
	}
}

// TestWriteThatChangesNothingIsSkipped: a set, CAS or lock that would
// leave the entry as it is writes nothing, as in Consul: the entry keeps
// its ModifyIndex (a CAS at the index read before still holds), the
// table keeps its index (blocking queries sleep on), and the write
// still answers true.
func TestWriteThatChangesNothingIsSkipped(t *testing.T) {
	s := kvtest.NewServer(t)
	sid, err := s.CreateSession(ctx, kv.Session{})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(op kv.Op) bool {
		t.Helper()
		ok, err := s.Apply(ctx, op)
		if err != nil {
			t.Fatalf("%s %s: %v", op.Verb, op.Key, err)
		}
		return ok
	}
	for _, tc := range []struct {
		name    string
		first   kv.Op // then sent again as it is
		changed kv.Op // differs in one field: written
	}{
		{"set",
			kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v"), Flags: 7},
			kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v"), Flags: 8}},
		{"lock by its holder",
			kv.Op{Verb: kv.VerbLock, Key: "l", Value: []byte("v"), Session: sid},
			kv.Op{Verb: kv.VerbLock, Key: "l", Value: []byte("w"), Session: sid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apply(tc.first)
			before := get(t, s, tc.first.Key)
			m0, _, _ := s.List(ctx, kv.QueryOptions{}, "")
			if !apply(tc.first) {
				t.Fatalf("the same %s again answered false", tc.first.Verb)
			}
			after := get(t, s, tc.first.Key)
			m1, _, _ := s.List(ctx, kv.QueryOptions{}, "")
			if !cmp.Equal(after, before) {
				t.Errorf("entry after the same %s again = %+v, want %+v unchanged", tc.first.Verb, after, before)
			}
			if m1.Index != m0.Index {
				t.Errorf("table index moved %d -> %d for a write that changed nothing", m0.Index, m1.Index)
			}
			cas := kv.Op{Verb: kv.VerbCAS, Key: tc.first.Key, Index: before.ModifyIndex, Value: tc.first.Value, Flags: tc.first.Flags}
			if tc.first.Verb == kv.VerbSet && !apply(cas) {
				t.Errorf("CAS at the index read before the repeat failed")
			}
			apply(tc.changed)
			if e := get(t, s, tc.first.Key); e.ModifyIndex == before.ModifyIndex {
				t.Errorf("a %s that changed the entry kept ModifyIndex %d", tc.changed.Verb, e.ModifyIndex)
			}
		})
	}
}
