package httpapi_test

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestLockMutualExclusion drives the official client's api.Lock: a
// second locker waits, in a blocking query, until the first unlocks.
func TestLockMutualExclusion(t *testing.T) {
	t.Parallel()
	const key = "service/leader"
	observe, waiting := signal(blockingRead("/v1/kv/" + key))
	ta := newTestAPI(t, observe)

	newLock := func(value string) *api.Lock {
		l, err := ta.client.LockOpts(&api.LockOptions{Key: key, Value: []byte(value), LockDelay: time.Millisecond})
		if err != nil {
			t.Fatalf("LockOpts: %v", err)
		}
		return l
	}
	first, second := newLock("first"), newLock("second")

	lost1, err := first.Lock(nil)
	if err != nil || lost1 == nil {
		t.Fatalf("first.Lock = %v, %v; want held", lost1, err)
	}
	if p := ta.get(t, key); p == nil || string(p.Value) != "first" || p.Session == "" {
		t.Fatalf("lock entry = %+v, want value first with a session", p)
	}

	type result struct {
		lost <-chan struct{}
		err  error
	}
	got := make(chan result, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		lost, err := second.Lock(stop)
		got <- result{lost, err}
	}()
	waitSignal(t, waiting, 1, "the second locker to wait on the held lock")
	select {
	case r := <-got:
		t.Fatalf("second.Lock returned while the first held the lock: %+v", r)
	default:
	}

	if err := first.Unlock(); err != nil {
		t.Fatalf("first.Unlock: %v", err)
	}
	// The first holder's lost-channel closes once it no longer holds.
	select {
	case <-lost1:
	case <-time.After(10 * time.Second):
		t.Fatal("first lock's channel not closed within 10s of Unlock")
	}

	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("second.Lock did not acquire within 10s of the first Unlock")
	}
	if r.err != nil || r.lost == nil {
		t.Fatalf("second.Lock = %v, %v; want held", r.lost, r.err)
	}
	if p := ta.get(t, key); p == nil || string(p.Value) != "second" {
		t.Errorf("lock entry = %+v, want value second", p)
	}
	if err := second.Unlock(); err != nil {
		t.Errorf("second.Unlock: %v", err)
	}
	if err := second.Destroy(); err != nil {
		t.Errorf("second.Destroy: %v", err)
	}
}

// TestSemaphore drives api.Semaphore with a limit of 2: the third
// contender waits until a holder releases.
func TestSemaphore(t *testing.T) {
	t.Parallel()
	const prefix = "service/sem/"
	observe, waiting := signal(blockingRead("/v1/kv/" + prefix))
	ta := newTestAPI(t, observe)

	newSem := func() *api.Semaphore {
		s, err := ta.client.SemaphorePrefix(prefix, 2)
		if err != nil {
			t.Fatalf("SemaphorePrefix: %v", err)
		}
		return s
	}
	s1, s2, s3 := newSem(), newSem(), newSem()
	for i, s := range []*api.Semaphore{s1, s2} {
		lost, err := s.Acquire(nil)
		if err != nil || lost == nil {
			t.Fatalf("holder %d Acquire = %v, %v; want held", i+1, lost, err)
		}
	}

	type result struct {
		lost <-chan struct{}
		err  error
	}
	got := make(chan result, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		lost, err := s3.Acquire(stop)
		got <- result{lost, err}
	}()
	waitSignal(t, waiting, 1, "the third contender to wait on the full semaphore")
	select {
	case r := <-got:
		t.Fatalf("third Acquire returned while two held the semaphore: %+v", r)
	default:
	}

	if err := s1.Release(); err != nil {
		t.Fatalf("s1.Release: %v", err)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("third Acquire did not get a slot within 10s of a Release")
	}
	if r.err != nil || r.lost == nil {
		t.Fatalf("third Acquire = %v, %v; want held", r.lost, r.err)
	}
	for _, s := range []*api.Semaphore{s2, s3} {
		if err := s.Release(); err != nil {
			t.Errorf("Release: %v", err)
		}
	}
}
