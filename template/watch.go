package template

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// Timing of views.
const (
	// blockingWait is ?wait= of the blocking queries: Consul's and
	// consul-template's default, 60 seconds (a server answers unchanged
	// data after that, which costs one round trip a minute per view).
	blockingWait = 60 * time.Second
	// minQueryInterval spaces the queries of one view at least this far
	// apart, as consul-template's rate limiter does, so that a source that
	// answers at once every time (a changing index, a broken server)
	// cannot spin a view.
	minQueryInterval = 100 * time.Millisecond
	// retryMin and retryMax bound the back-off after a failed query.
	retryMin = 250 * time.Millisecond
	retryMax = time.Minute
)

// watcher keeps one view per dependency that some template uses. Views
// answer recall and report changes; the runner adds and retires them.
type watcher struct {
	src  Source
	log  *slog.Logger
	once bool // a view stops after its first data (-once)

	mu     sync.Mutex
	views  map[dependency]*view
	dirty  map[dependency]struct{}
	errors int // queries that failed, over the watcher's life

	changed chan struct{} // one token: some view got new data
	wg      sync.WaitGroup
}

// view is the data of one dependency. New data waits in next until the
// runner drains the changes: every template executed between two drains
// sees the same data, so templates that read the same dependency render
// (and run their commands) together.
type view struct {
	dep    dependency
	cancel context.CancelFunc

	// Guarded by watcher.mu.
	data     any  // what recall returns
	received bool // data is set
	next     any  // newer data, not yet drained
	hasNext  bool
	failing  bool // the last query failed (to log once per failure streak)
}

func newWatcher(src Source, log *slog.Logger, once bool) *watcher {
	return &watcher{
		src:     src,
		log:     log,
		once:    once,
		views:   make(map[dependency]*view),
		dirty:   make(map[dependency]struct{}),
		changed: make(chan struct{}, 1),
	}
}

// recall returns the data of d and whether it has any yet.
func (w *watcher) recall(d dependency) (any, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.views[d]
	if v == nil || !v.received {
		return nil, false
	}
	return v.data, true
}

// watch makes sure every dependency in deps has a view, starting the
// missing ones under ctx.
func (w *watcher) watch(ctx context.Context, deps map[dependency]struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range deps {
		if _, ok := w.views[d]; ok {
			continue
		}
		vctx, cancel := context.WithCancel(ctx)
		v := &view{dep: d, cancel: cancel}
		w.views[d] = v
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.poll(vctx, v)
		}()
		w.log.Debug("watching", "dependency", d.String())
	}
}

// retain stops the views of dependencies not in keep.
func (w *watcher) retain(keep map[dependency]struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for d, v := range w.views {
		if _, ok := keep[d]; !ok {
			v.cancel()
			delete(w.views, d)
			delete(w.dirty, d)
			w.log.Debug("no longer watching", "dependency", d.String())
		}
	}
}

// drain makes the data that arrived since the last drain visible to
// recall and returns the dependencies it changed.
func (w *watcher) drain() map[dependency]struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := w.dirty
	w.dirty = make(map[dependency]struct{})
	for d := range changed {
		if v := w.views[d]; v != nil && v.hasNext {
			v.data, v.received = v.next, true
			v.next, v.hasNext = nil, false
		}
	}
	return changed
}

// len is the number of views.
func (w *watcher) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.views)
}

// stop ends every view and waits for their goroutines.
func (w *watcher) stop() {
	w.mu.Lock()
	for _, v := range w.views {
		v.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// poll is a view's loop: blocking queries, each from the index of the
// last answer, until ctx ends. New data is stored and reported; an answer
// with the same index (the wait ran out) or the same data is not. As in
// consul-template, a key read by `key` that does not exist is not data:
// the view keeps waiting for it.
func (w *watcher) poll(ctx context.Context, v *view) {
	var (
		index     uint64
		lastStart time.Time // of the last blocking query
		failures  int
	)
	for {
		// Space blocking queries; the first one (index 0) answers at once
		// by design and is not counted.
		if !lastStart.IsZero() && index != 0 {
			if !sleep(ctx, minQueryInterval-time.Since(lastStart)) {
				return
			}
		}
		if index != 0 {
			lastStart = time.Now()
		}
		data, idx, err := w.fetch(ctx, v.dep, QueryOptions{WaitIndex: index, WaitTime: blockingWait})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			w.failed(v, err)
			if !sleep(ctx, backoff(failures)) {
				return
			}
			continue
		}
		if failures > 0 {
			failures = 0
			w.recovered(v)
		}
		idx = max(idx, 1) // Consul: treat an index of 0 as 1, or a query would never block
		if idx == index {
			continue
		}
		if idx < index {
			// The index went back (a new leader, a restored snapshot):
			// start over, as Consul tells clients to.
			index = 0
			continue
		}
		index = idx
		if w.store(v, data) && w.once {
			return
		}
	}
}

// store keeps data as v's next data unless it equals the latest v holds,
// and reports whether it did.
func (w *watcher) store(v *view, data any) bool {
	if data == nil && v.dep.kind == depKVBlock {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.views[v.dep] != v {
		return false // retired while the query ran
	}
	switch {
	case v.hasNext && reflect.DeepEqual(v.next, data):
		return false
	case !v.hasNext && v.received && reflect.DeepEqual(v.data, data):
		return false
	}
	v.next, v.hasNext = data, true
	w.dirty[v.dep] = struct{}{}
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return true
}

func (w *watcher) fetch(ctx context.Context, d dependency, q QueryOptions) (any, uint64, error) {
	if d.kind == depFile {
		return fetchFile(ctx, d.name, q.WaitIndex)
	}
	return d.fetch(ctx, w.src, q)
}

// failed logs the first failure of a streak, at warn; the rest at debug.
func (w *watcher) failed(v *view, err error) {
	w.mu.Lock()
	first := !v.failing
	v.failing = true
	w.errors++
	w.mu.Unlock()
	if first {
		w.log.Warn("query failed; retrying", "dependency", v.dep.String(), "err", err)
	} else {
		w.log.Debug("query failed again", "dependency", v.dep.String(), "err", err)
	}
}

func (w *watcher) recovered(v *view) {
	w.mu.Lock()
	v.failing = false
	w.mu.Unlock()
	w.log.Info("query works again", "dependency", v.dep.String())
}

func (w *watcher) queryErrors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errors
}

// backoff is the wait before retry n (1-based): 250ms doubling to a minute.
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// sleep waits d (nothing when d <= 0) and reports false when ctx ended
// first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
