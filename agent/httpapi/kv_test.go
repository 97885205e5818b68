package httpapi_test

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

func TestKVPutGetDelete(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	kvc := ta.client.KV()

	if _, err := kvc.Put(&api.KVPair{Key: "app/config", Value: []byte("v1"), Flags: 42}, nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	p, qm, err := kvc.Get("app/config", nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if p == nil {
		t.Fatal("Get(app/config) = nil, want the entry just written")
	}
	if string(p.Value) != "v1" || p.Flags != 42 || p.Key != "app/config" {
		t.Errorf("Get(app/config) = key %q value %q flags %d, want app/config v1 42", p.Key, p.Value, p.Flags)
	}
	if p.CreateIndex == 0 || p.ModifyIndex != p.CreateIndex {
		t.Errorf("Get(app/config) indexes = create %d modify %d, want equal and positive", p.CreateIndex, p.ModifyIndex)
	}
	if qm.LastIndex != p.ModifyIndex || !qm.KnownLeader {
		t.Errorf("Get meta = index %d known leader %v, want %d true", qm.LastIndex, qm.KnownLeader, p.ModifyIndex)
	}

	// An empty value is a value, not a missing key.
	ta.put(t, "app/empty", "")
	if p := ta.get(t, "app/empty"); p == nil || len(p.Value) != 0 {
		t.Errorf("Get(app/empty) = %+v, want an entry with an empty value", p)
	}

	if _, err := kvc.Delete("app/config", nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if p := ta.get(t, "app/config"); p != nil {
		t.Errorf("Get after Delete = %+v, want nil", p)
	}
	// Deleting a missing key succeeds, as in Consul.
	if _, err := kvc.Delete("app/never", nil); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
}

func TestKVMissingKeyIs404WithIndex(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "other", "x")

	resp, body := ta.do(t, http.MethodGet, "/v1/kv/missing", nil)
	if resp.StatusCode != http.StatusNotFound || body != "" {
		t.Errorf("GET missing key = %d %q, want 404 with an empty body", resp.StatusCode, body)
	}
	checkReadHeaders(t, resp, "leader")

	for _, path := range []string{"/v1/kv/nothing/?recurse", "/v1/kv/nothing/?keys"} {
		resp, body := ta.do(t, http.MethodGet, path, nil)
		if resp.StatusCode != http.StatusNotFound || body != "" {
			t.Errorf("GET %s = %d %q, want 404 with an empty body", path, resp.StatusCode, body)
		}
		checkReadHeaders(t, resp, "leader")
	}

	// The client reports a missing key as nil with the index to block on.
	p, qm, err := ta.client.KV().Get("missing", nil)
	if err != nil || p != nil || qm.LastIndex == 0 {
		t.Errorf("Get(missing) = %v, index %d, %v; want nil, index > 0, nil", p, qm.LastIndex, err)
	}
}

func TestKVReadHeaders(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "k", "v")
	tests := []struct {
		name, query, want string
	}{
		{"default", "", "leader"},
		{"stale", "?stale", "stale"},
		{"stale with empty value", "?stale=", "stale"},
		{"consistent", "?consistent", "consistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := ta.do(t, http.MethodGet, "/v1/kv/k"+tt.query, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/kv/k%s = %d, want 200", tt.query, resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			checkReadHeaders(t, resp, tt.want)
		})
	}
}

func TestKVListKeysSeparator(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	for _, k := range []string{"web/a", "web/b/c", "web/b/d", "web/e/f/g", "webx", "zzz"} {
		ta.put(t, k, "v-"+k)
	}
	kvc := ta.client.KV()

	pairs, _, err := kvc.List("web/", nil)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, p := range pairs {
		got = append(got, p.Key+"="+string(p.Value))
	}
	want := []string{"web/a=v-web/a", "web/b/c=v-web/b/c", "web/b/d=v-web/b/d", "web/e/f/g=v-web/e/f/g"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List(web/) (-want +got):\n%s", diff)
	}

	tests := []struct {
		name, prefix, sep string
		want              []string
	}{
		{"all keys under prefix", "web/", "", []string{"web/a", "web/b/c", "web/b/d", "web/e/f/g"}},
		{"one level", "web/", "/", []string{"web/a", "web/b/", "web/e/"}},
		{"root one level", "", "/", []string{"web/", "webx", "zzz"}},
		{"prefix without slash", "web", "/", []string{"web/", "webx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, qm, err := kvc.Keys(tt.prefix, tt.sep, nil)
			if err != nil {
				t.Fatalf("Keys(%q, %q): %v", tt.prefix, tt.sep, err)
			}
			if diff := cmp.Diff(tt.want, keys); diff != "" {
				t.Errorf("Keys(%q, %q) (-want +got):\n%s", tt.prefix, tt.sep, diff)
			}
			if qm.LastIndex == 0 {
				t.Errorf("Keys(%q, %q) index = 0, want > 0", tt.prefix, tt.sep)
			}
		})
	}

	// Consul still reads its historic misspelling ?seperator=.
	resp, body := ta.do(t, http.MethodGet, "/v1/kv/web/?keys&seperator=/", nil)
	if resp.StatusCode != http.StatusOK || body != `["web/a","web/b/","web/e/"]` {
		t.Errorf("GET ?keys&seperator=/ = %d %s, want 200 [\"web/a\",\"web/b/\",\"web/e/\"]", resp.StatusCode, body)
	}
	// The root of an empty store is an empty list, not a 404.
	empty := newTestAPI(t, nil)
	resp, body = empty.do(t, http.MethodGet, "/v1/kv/?keys", nil)
	if resp.StatusCode != http.StatusOK || body != "[]" {
		t.Errorf("GET /v1/kv/?keys on an empty store = %d %s, want 200 []", resp.StatusCode, body)
	}

	if _, err := kvc.DeleteTree("web/", nil); err != nil {
		t.Fatalf("DeleteTree: %v", err)
	}
	keys, _, err := kvc.Keys("", "", nil)
	if err != nil {
		t.Fatalf("Keys after DeleteTree: %v", err)
	}
	if diff := cmp.Diff([]string{"webx", "zzz"}, keys); diff != "" {
		t.Errorf("Keys after DeleteTree(web/) (-want +got):\n%s", diff)
	}
}

func TestKVRaw(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	value := []byte("<script>\x00\xff binary")
	if _, err := ta.client.KV().Put(&api.KVPair{Key: "raw", Value: value}, nil); err != nil {
		t.Fatal(err)
	}
	resp, body := ta.do(t, http.MethodGet, "/v1/kv/raw?raw", nil)
	if resp.StatusCode != http.StatusOK || body != string(value) {
		t.Errorf("GET ?raw = %d %q, want 200 %q", resp.StatusCode, body, value)
	}
	for h, want := range map[string]string{
		"Content-Type":            "text/plain",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "sandbox",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("GET ?raw header %s = %q, want %q", h, got, want)
		}
	}
	checkReadHeaders(t, resp, "leader")
}

func TestKVFlagsAndCAS(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	kvc := ta.client.KV()

	// cas=0 creates only when absent.
	ok, _, err := kvc.CAS(&api.KVPair{Key: "c", Value: []byte("first"), Flags: 7}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS(index 0) on a new key = %v, %v; want true", ok, err)
	}
	ok, _, err = kvc.CAS(&api.KVPair{Key: "c", Value: []byte("again")}, nil)
	if err != nil || ok {
		t.Fatalf("CAS(index 0) on an existing key = %v, %v; want false", ok, err)
	}
	p := ta.get(t, "c")
	if p.Flags != 7 || string(p.Value) != "first" {
		t.Fatalf("after CAS: %q flags %d, want first flags 7", p.Value, p.Flags)
	}
	ok, _, err = kvc.CAS(&api.KVPair{Key: "c", Value: []byte("second"), ModifyIndex: p.ModifyIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS(current index) = %v, %v; want true", ok, err)
	}
	ok, _, err = kvc.DeleteCAS(&api.KVPair{Key: "c", ModifyIndex: p.ModifyIndex}, nil)
	if err != nil || ok {
		t.Fatalf("DeleteCAS(stale index) = %v, %v; want false", ok, err)
	}
	p = ta.get(t, "c")
	ok, _, err = kvc.DeleteCAS(&api.KVPair{Key: "c", ModifyIndex: p.ModifyIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("DeleteCAS(current index) = %v, %v; want true", ok, err)
	}
	if p := ta.get(t, "c"); p != nil {
		t.Errorf("after DeleteCAS: %+v, want nil", p)
	}
}

// TestKVCASRace: many writers CAS the same key from the same index;
// exactly one wins.
func TestKVCASRace(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "race", "start")
	idx := ta.get(t, "race").ModifyIndex

	const n = 16
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		won   = make(chan int, n)
		errs  = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, _, err := ta.client.KV().CAS(&api.KVPair{Key: "race", Value: []byte{byte('a' + i)}, ModifyIndex: idx}, nil)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				won <- i
			}
		})
	}
	close(start)
	wg.Wait()
	close(won)
	close(errs)
	for err := range errs {
		t.Errorf("CAS: %v", err)
	}
	var winners []int
	for i := range won {
		winners = append(winners, i)
	}
	if len(winners) != 1 {
		t.Fatalf("%d CAS writers at index %d: winners %v, want exactly one", n, idx, winners)
	}
	if got := ta.get(t, "race").Value; !bytes.Equal(got, []byte{byte('a' + winners[0])}) {
		t.Errorf("value after the race = %q, want the winner's %q", got, byte('a'+winners[0]))
	}
}

// TestKVBlockingQueryWakes: a blocking Get in flight returns as soon as
// the key changes, with the new value and a higher index.
func TestKVBlockingQueryWakes(t *testing.T) {
	t.Parallel()
	observe, arrived := signal(blockingRead("/v1/kv/watched"))
	ta := newTestAPI(t, observe)
	ta.put(t, "watched", "old")
	idx := ta.get(t, "watched").ModifyIndex

	type result struct {
		p   *api.KVPair
		qm  *api.QueryMeta
		err error
	}
	const wait = 30 * time.Second
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		p, qm, err := ta.client.KV().Get("watched", &api.QueryOptions{WaitIndex: idx, WaitTime: wait})
		done <- result{p, qm, err}
	}()
	waitSignal(t, arrived, 1, "the blocking GET to reach the server")
	select {
	case r := <-done:
		t.Fatalf("blocking Get returned before any write: %+v", r)
	default:
	}
	ta.put(t, "watched", "new")

	r := <-done
	if r.err != nil {
		t.Fatalf("blocking Get: %v", r.err)
	}
	if elapsed := time.Since(start); elapsed >= wait {
		t.Errorf("blocking Get took %v, the whole wait; want it woken by the write", elapsed)
	}
	if r.p == nil || string(r.p.Value) != "new" {
		t.Errorf("blocking Get = %+v, want value new", r.p)
	}
	if r.qm.LastIndex <= idx {
		t.Errorf("blocking Get index = %d, want > %d", r.qm.LastIndex, idx)
	}
}

// TestKVBlockingQueryTimesOut: with nothing changing, a blocking Get
// answers after ?wait with the same index.
func TestKVBlockingQueryTimesOut(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "still", "v")
	ta.put(t, "prefix/still", "v")
	idx := ta.get(t, "still").ModifyIndex

	const wait = 100 * time.Millisecond
	start := time.Now()
	p, qm, err := ta.client.KV().Get("still", &api.QueryOptions{WaitIndex: idx, WaitTime: wait})
	if err != nil {
		t.Fatalf("blocking Get: %v", err)
	}
	if elapsed := time.Since(start); elapsed < wait {
		t.Errorf("blocking Get returned after %v, want at least the wait %v", elapsed, wait)
	}
	if qm.LastIndex != idx || p == nil || string(p.Value) != "v" {
		t.Errorf("blocking Get = %+v index %d, want value v index %d", p, qm.LastIndex, idx)
	}

	// The same holds for lists.
	_, lqm, err := ta.client.KV().List("prefix/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, qm, err = ta.client.KV().List("prefix/", &api.QueryOptions{WaitIndex: lqm.LastIndex, WaitTime: wait})
	if err != nil || qm.LastIndex != lqm.LastIndex {
		t.Errorf("blocking List = index %d, %v; want index %d", qm.LastIndex, err, lqm.LastIndex)
	}
}

func TestKVAcquireRelease(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	kvc := ta.client.KV()
	sess := ta.client.Session()
	s1, _, err := sess.Create(&api.SessionEntry{Name: "one", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Session.Create: %v", err)
	}
	s2, _, err := sess.Create(&api.SessionEntry{Name: "two", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Session.Create: %v", err)
	}

	steps := []struct {
		name    string
		do      func() (bool, *api.WriteMeta, error)
		want    bool
		holder  string
		value   string
		lockIdx uint64
	}{
		{"s1 acquires", func() (bool, *api.WriteMeta, error) {
			return kvc.Acquire(&api.KVPair{Key: "lock", Value: []byte("s1"), Session: s1}, nil)
		}, true, s1, "s1", 1},
		{"s2 cannot acquire a held lock", func() (bool, *api.WriteMeta, error) {
			return kvc.Acquire(&api.KVPair{Key: "lock", Value: []byte("s2"), Session: s2}, nil)
		}, false, s1, "s1", 1},
		{"s2 cannot release s1's lock", func() (bool, *api.WriteMeta, error) {
			return kvc.Release(&api.KVPair{Key: "lock", Session: s2}, nil)
		}, false, s1, "s1", 1},
		{"s1 releases", func() (bool, *api.WriteMeta, error) {
			return kvc.Release(&api.KVPair{Key: "lock", Value: []byte("free"), Session: s1}, nil)
		}, true, "", "free", 1},
		{"s2 acquires the free lock", func() (bool, *api.WriteMeta, error) {
			return kvc.Acquire(&api.KVPair{Key: "lock", Value: []byte("s2"), Session: s2}, nil)
		}, true, s2, "s2", 2},
	}
	for _, st := range steps {
		ok, _, err := st.do()
		if err != nil || ok != st.want {
			t.Fatalf("%s: got %v, %v; want %v, nil", st.name, ok, err, st.want)
		}
		p := ta.get(t, "lock")
		if p == nil || p.Session != st.holder || string(p.Value) != st.value || p.LockIndex != st.lockIdx {
			t.Fatalf("%s: entry = %+v, want session %q value %q lock index %d", st.name, p, st.holder, st.value, st.lockIdx)
		}
	}
}
