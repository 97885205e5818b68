package registrator

import (
	"context"
	"sync"
	"time"
)

// Work a queued container needs; flags accumulate while it waits.
const (
	workReconcile uint8 = 1 << iota // re-inspect and make the registry match
	workHeartbeat                   // refresh registrator's own checks
)

// queue is the work list between the event reader and the workers. It
// coalesces per container (a container waits at most once, with the union
// of its work), so it is bounded by the number of containers and add never
// blocks; and it hands a container to one worker at a time, so one
// container's work is applied in order. Level-triggered reconciles make
// coalescing lossless: the worker reads the container's state when it
// runs, which includes every event queued before.
type queue struct {
	mu sync.Mutex
	// wake holds a token while containers may be waiting; a worker that
	// takes one container and leaves others passes the token on. (A
	// channel, not a sync.Cond, so workers block durably under
	// testing/synctest and select on stop.)
	wake     chan struct{}
	stop     chan struct{}
	order    []string             // waiting containers, oldest first; each also in work, none inflight
	work     map[string]uint8     // waiting (or re-added while inflight) -> flags
	since    map[string]time.Time // waiting -> when its oldest waiting work was queued
	inflight map[string]bool

	// barrier: containers queued by the latest full sync that no worker
	// has finished yet; done closes when it empties.
	barrier     map[string]bool
	barrierDone chan struct{}
	// rerun: barrier containers that were inflight when queued; the
	// inflight run began before the sync and does not count.
	rerun map[string]bool
}

func newQueue() *queue {
	return &queue{work: map[string]uint8{}, since: map[string]time.Time{}, inflight: map[string]bool{}, barrier: map[string]bool{}, rerun: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// add queues work for container id. Safe from any goroutine; never blocks
// beyond the mutex.
func (q *queue) add(id string, flags uint8) {
	q.mu.Lock()
	q.addLocked(id, flags)
	q.mu.Unlock()
}

func (q *queue) addLocked(id string, flags uint8) {
	if f, ok := q.work[id]; ok {
		q.work[id] = f | flags
		return
	}
	q.work[id] = flags
	q.since[id] = time.Now()
	if !q.inflight[id] {
		q.order = append(q.order, id)
		q.signal()
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// addSync queues a reconcile of every id as part of a full sync and
// returns a channel closed once each of them has been handled at least
// once after this call.
func (q *queue) addSync(ids []string) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.barrier) == 0 {
		q.barrierDone = make(chan struct{})
	}
	for _, id := range ids {
		q.barrier[id] = true
		if q.inflight[id] {
			q.rerun[id] = true
		}
		q.addLocked(id, workReconcile)
	}
	done := q.barrierDone
	if len(q.barrier) == 0 {
		close(done)
	}
	return done
}

// nextSince blocks until a container is waiting and no other worker
// holds it, and returns it with its work and when that was queued (an
// event arriving, a sync, a heartbeat: the start of the registrator's
// lag); ok is false once the queue is closed.
func (q *queue) nextSince() (id string, flags uint8, since time.Time, ok bool) {
	for {
		select {
		case <-q.stop:
			return "", 0, time.Time{}, false
		case <-q.wake:
		}
		q.mu.Lock()
		if len(q.order) == 0 {
			q.mu.Unlock()
			continue
		}
		id = q.order[0]
		q.order[0] = ""
		q.order = q.order[1:]
		if len(q.order) > 0 {
			q.signal()
		}
		flags, since = q.work[id], q.since[id]
		delete(q.work, id)
		delete(q.since, id)
		q.inflight[id] = true
		q.mu.Unlock()
		return id, flags, since, true
	}
}

// done releases id; work added meanwhile queues it again.
func (q *queue) done(id string, flags uint8) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inflight, id)
	if _, ok := q.work[id]; ok {
		q.order = append(q.order, id)
		q.signal()
	}
	if q.rerun[id] {
		delete(q.rerun, id) // queued again by addSync: that run counts
	} else if flags&workReconcile != 0 && q.barrier[id] {
		delete(q.barrier, id)
		if len(q.barrier) == 0 {
			close(q.barrierDone)
		}
	}
}

// closeOnDone stops the workers when ctx ends; the returned stop undoes
// that.
func (q *queue) closeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { close(q.stop) })
}
