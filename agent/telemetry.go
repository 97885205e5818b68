package agent

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/metrics"
	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/template"
)

// telemetry is one Run's metrics: the agent-owned registry and the
// instruments each part records into through the small hooks it takes
// (kv.Config.OnCommit, dns.Config.Metrics, httpapi.Ops.Observer) or
// through a wrapper around what it is given (the store the HTTP API
// uses, the check sink, the registrator's registry, the VIP data plane).
// A nil *telemetry (-disable-metrics) wraps nothing and records nothing.
type telemetry struct {
	reg *metrics.Registry

	httpTime      *metrics.TimerVec
	httpSeries    atomic.Pointer[map[httpSeries]metrics.Timer] // see Request
	httpSeriesMu  sync.Mutex                                   // serializes adding to httpSeries
	blocking      prometheus.Gauge
	kvRead        *metrics.TimerVec
	kvApply       *metrics.TimerVec
	txnTime       *metrics.TimerVec
	storeErrors   *prometheus.CounterVec
	dnsTime       *metrics.TimerVec
	dnsByRcode    [24]metrics.Timer // rcodes 0-23 kept ready: the hot path does no label lookup
	checkUpdates  *prometheus.CounterVec
	regEvents     *prometheus.CounterVec
	regTime       *metrics.TimerVec
	regLag        *metrics.TimerVec
	vipTime       *metrics.TimerVec
	vipErrors     *prometheus.CounterVec
	raftCommit    metrics.Timer
	raftApply     prometheus.Counter
	raftState     *prometheus.CounterVec
	leaderChanges prometheus.Counter

	tmplOnce   sync.Once
	tmplRunner atomic.Pointer[template.Runner]
}

func newTelemetry(hostname string) *telemetry {
	r := metrics.New(hostname)
	t := &telemetry{
		reg:           r,
		httpTime:      r.Timer("consul.api.http", "HTTP API requests by method, endpoint and status", "method", "path", "code"),
		blocking:      r.Gauge("consul.rpc.queries_blocking", "blocking queries (?index=) parked on this agent").WithLabelValues(),
		kvRead:        r.Timer("consul.kvs.read", "KV reads by kind (get, list, keys)", "op"),
		kvApply:       r.Timer("consul.kvs.apply", "KV writes by verb", "op"),
		txnTime:       r.Timer("consul.txn.apply", "transactions (read: only reads)", "kind"),
		storeErrors:   r.Counter("consul.kvs.errors", "KV and txn operations that failed, by op", "op"),
		dnsTime:       r.Timer("consul.dns.query", "DNS queries answered, by rcode", "rcode"),
		checkUpdates:  r.Counter("consul.checks.updates", "check results that changed a check's status or output, by the new status", "status"),
		regEvents:     r.Counter("cairn.registrator.events", "registrator calls to the catalog, by op and result", "op", "result"),
		regTime:       r.Timer("cairn.registrator.apply", "registrator calls to the catalog, by op", "op"),
		regLag:        r.Timer("cairn.registrator.lag", "registrator lag: from the work being queued (a Docker event received, a sync, a heartbeat) to the catalog call that applied it, by op", "op"),
		vipTime:       r.Timer("cairn.vip.reconcile", "VIP data plane reconciles, by kind (sync, update, flush)", "op"),
		vipErrors:     r.Counter("cairn.vip.reconcile_errors", "VIP data plane reconciles that failed, by kind", "op"),
		raftCommit:    r.Timer("consul.raft.commitTime", "Raft applies this server led, submit to applied").With(),
		raftApply:     r.Counter("consul.raft.apply", "Raft entries this server applied as leader").WithLabelValues(),
		raftState:     r.Counter("consul.raft.state", "Raft state changes of this server, by the new state", "state"),
		leaderChanges: r.Counter("consul.raft.leader.changes", "Raft leader changes this server saw").WithLabelValues(),
	}
	for rc := range t.dnsByRcode {
		t.dnsByRcode[rc] = t.dnsTime.With(rcodeName(rc))
	}
	return t
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return strconv.Itoa(rc)
}

// Query implements dns.Metrics.
func (t *telemetry) Query(rcode int, d time.Duration) {
	if rcode >= 0 && rcode < len(t.dnsByRcode) {
		t.dnsByRcode[rcode].Observe(d)
		return
	}
	t.dnsTime.With(rcodeName(rcode)).Observe(d)
}

// Request implements httpapi.Observer.
//
// Methods outside HTTP's own count as OTHER, so a client cannot grow the
// label set without bound (routes and status codes are bounded already).
//
// The series of a (method, route, status) is looked up once and kept in
// a copy-on-write map read without a lock: a request costs a map read
// and an atomic add, no label hashing, no allocation.
func (t *telemetry) Request(method, route string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions, http.MethodPatch:
	default:
		method = "OTHER"
	}
	k := httpSeries{method, route, status}
	if m := t.httpSeries.Load(); m != nil {
		if tm, ok := (*m)[k]; ok {
			tm.Observe(d)
			return
		}
	}
	t.httpSeriesFor(k).Observe(d)
}

// httpSeries names one series of consul.api.http.
type httpSeries struct {
	method, route string
	status        int
}

// httpSeriesFor adds k's series to the map (a new copy); the label sets
// are bounded (methods, routes and status codes), so the map is too.
func (t *telemetry) httpSeriesFor(k httpSeries) metrics.Timer {
	t.httpSeriesMu.Lock()
	defer t.httpSeriesMu.Unlock()
	old := t.httpSeries.Load()
	if old != nil {
		if tm, ok := (*old)[k]; ok {
			return tm
		}
	}
	next := make(map[httpSeries]metrics.Timer, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	tm := t.httpTime.With(k.method, k.route, strconv.Itoa(k.status))
	next[k] = tm
	t.httpSeries.Store(&next)
	return tm
}

// Blocking implements httpapi.Observer.
func (t *telemetry) Blocking(delta int) { t.blocking.Add(float64(delta)) }

func (t *telemetry) observer() httpapi.Observer {
	if t == nil {
		return nil
	}
	return t
}

// onCommit is kv's OnCommit hook.
func (t *telemetry) onCommit() func(time.Duration) {
	if t == nil {
		return nil
	}
	return func(d time.Duration) {
		t.raftCommit.Observe(d)
		t.raftApply.Inc()
	}
}

// store wraps the HTTP API's store with KV and txn timers.
func (t *telemetry) store(s httpapi.Store) httpapi.Store {
	if t == nil {
		return s
	}
	return &timedStore{Store: s, t: t, get: t.kvRead.With("get"), list: t.kvRead.With("list"), keys: t.kvRead.With("keys")}
}

type timedStore struct {
	httpapi.Store
	t               *telemetry
	get, list, keys metrics.Timer
}

func (s *timedStore) done(op string, start time.Time, tm metrics.Timer, err error) {
	if err != nil {
		s.t.storeErrors.WithLabelValues(op).Inc()
		return
	}
	tm.Since(start)
}

func (s *timedStore) Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	start := time.Now()
	m, e, err := s.Store.Get(ctx, q, key)
	if q.MinIndex == 0 {
		s.done("get", start, s.get, err)
	}
	return m, e, err
}

func (s *timedStore) List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error) {
	start := time.Now()
	m, e, err := s.Store.List(ctx, q, prefix)
	if q.MinIndex == 0 {
		s.done("list", start, s.list, err)
	}
	return m, e, err
}

func (s *timedStore) Keys(ctx context.Context, q kv.QueryOptions, prefix, sep string) (kv.QueryMeta, []string, error) {
	start := time.Now()
	m, k, err := s.Store.Keys(ctx, q, prefix, sep)
	if q.MinIndex == 0 {
		s.done("keys", start, s.keys, err)
	}
	return m, k, err
}

func (s *timedStore) Apply(ctx context.Context, op kv.Op) (bool, error) {
	start := time.Now()
	ok, err := s.Store.Apply(ctx, op)
	s.done(string(op.Verb), start, s.t.kvApply.With(string(op.Verb)), err)
	return ok, err
}

func (s *timedStore) Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	start := time.Now()
	m, r, e, err := s.Store.Txn(ctx, q, ops)
	kind := "read"
	for _, op := range ops {
		if !op.Verb.IsRead() {
			kind = "write"
			break
		}
	}
	s.done("txn", start, s.t.txnTime.With(kind), err)
	return m, r, e, err
}

// checkSink counts check results on their way to the catalog.
func (t *telemetry) checkSink(s checks.Sink) checks.Sink {
	if t == nil {
		return s
	}
	return countedSink{Sink: s, t: t}
}

type countedSink struct {
	checks.Sink
	t *telemetry
}

func (s countedSink) UpdateCheck(id string, status checks.Status, output string) {
	s.t.checkUpdates.WithLabelValues(string(status)).Inc()
	s.Sink.UpdateCheck(id, status, output)
}

// registry counts the registrator's calls.
func (t *telemetry) registry(r registrator.Registry) registrator.Registry {
	if t == nil {
		return r
	}
	return countedRegistry{Registry: r, t: t}
}

type countedRegistry struct {
	registrator.Registry
	t *telemetry
}

func (r countedRegistry) count(ctx context.Context, op string, start time.Time, err error) error {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.t.regEvents.WithLabelValues(op, result).Inc()
	r.t.regTime.Since(start, op)
	if q := registrator.QueuedAt(ctx); !q.IsZero() && err == nil {
		r.t.regLag.Since(q, op)
	}
	return err
}

func (r countedRegistry) Register(ctx context.Context, s *registrator.Service) error {
	start := time.Now()
	return r.count(ctx, "register", start, r.Registry.Register(ctx, s))
}

func (r countedRegistry) Deregister(ctx context.Context, s *registrator.Service) error {
	start := time.Now()
	return r.count(ctx, "deregister", start, r.Registry.Deregister(ctx, s))
}

func (r countedRegistry) Refresh(ctx context.Context, s *registrator.Service) error {
	start := time.Now()
	return r.count(ctx, "refresh", start, r.Registry.Refresh(ctx, s))
}

// dataplane times the VIP data plane's reconciles.
func (t *telemetry) dataplane(dp vip.Dataplane) vip.Dataplane {
	if t == nil || dp == nil {
		return dp
	}
	return timedDataplane{Dataplane: dp, t: t}
}

type timedDataplane struct {
	vip.Dataplane
	t *telemetry
}

func (d timedDataplane) done(op string, start time.Time, err error) error {
	d.t.vipTime.Since(start, op)
	if err != nil {
		d.t.vipErrors.WithLabelValues(op).Inc()
	}
	return err
}

func (d timedDataplane) Sync(ctx context.Context, desired []vip.Service) error {
	start := time.Now()
	return d.done("sync", start, d.Dataplane.Sync(ctx, desired))
}

func (d timedDataplane) Update(ctx context.Context, set []vip.Service, del []netip.Addr) error {
	start := time.Now()
	return d.done("update", start, d.Dataplane.Update(ctx, set, del))
}

func (d timedDataplane) Flush(ctx context.Context) error {
	start := time.Now()
	return d.done("flush", start, d.Dataplane.Flush(ctx))
}

// templates exposes the current template runner's own counters (the
// runner changes on reload; the series stay).
func (t *telemetry) templates(r *template.Runner) {
	if t == nil {
		return
	}
	t.tmplRunner.Store(r)
	t.tmplOnce.Do(func() {
		stats := func() template.Stats {
			if r := t.tmplRunner.Load(); r != nil {
				return r.Stats()
			}
			return template.Stats{}
		}
		t.reg.CounterVecFunc("cairn.template.events", "events of the current template runner, by kind", "kind", func() map[string]float64 {
			st := stats()
			return map[string]float64{
				"render": float64(st.Renders), "render_error": float64(st.RenderErrors), "check_failure": float64(st.CheckFailures),
				"command": float64(st.Commands), "command_failure": float64(st.CommandFailures), "query_error": float64(st.QueryErrors),
			}
		})
		t.reg.GaugeFunc("cairn.template.dependencies", "dependencies the templates watch", func() float64 { return float64(stats().Dependencies) })
	})
}

// catalog exposes the catalog's size and the members' states, read at
// each scrape.
func (t *telemetry) catalog(cat *catalog.Catalog, ml *membership.Membership) {
	if t == nil {
		return
	}
	t.reg.GaugeFunc("consul.catalog.services", "distinct service names in the catalog", func() float64 {
		_, svcs := cat.Services(nil, catalog.Filter{})
		return float64(len(svcs))
	})
	t.reg.GaugeFunc("consul.catalog.service_instances", "service instances in the catalog", func() float64 {
		_, insts := cat.AllInstances(nil)
		return float64(len(insts))
	})
	t.reg.GaugeFunc("consul.catalog.nodes", "nodes in the catalog", func() float64 {
		_, nodes := cat.Nodes(nil, catalog.Filter{})
		return float64(len(nodes))
	})
	t.reg.GaugeFunc("consul.agent.local.services", "services registered on this agent", func() float64 {
		return float64(len(cat.LocalServices()))
	})
	t.reg.GaugeVecFunc("consul.serf.members", "gossip members by status", "status", func() map[string]float64 {
		out := map[string]float64{"alive": 0, "leaving": 0, "left": 0, "failed": 0}
		_, ms := ml.Members(nil)
		for _, m := range ms {
			out[strings.ToLower(memberStatus[m.Status].String())]++
		}
		return out
	})
}

// convergence measures how gossip carries the other agents' catalog
// states here: the gauge cairn.catalog.replicas_missing (live members
// whose state this agent does not hold; 0 when converged, read at each
// scrape) and the timer cairn.catalog.convergence (from a member first
// seen live here, joining or coming back, to its state arriving here;
// milliseconds). The part watches membership and
// the catalog and returns when ctx ends.
func (t *telemetry) convergence(cat *catalog.Catalog, ml *membership.Membership, self string) (part, bool) {
	if t == nil {
		return part{}, false
	}
	missing := func(ms []membership.Member, held map[string]uint64) []string {
		var out []string
		for _, m := range ms {
			if m.Name == self || (m.Status != membership.StatusAlive && m.Status != membership.StatusLeaving) {
				continue
			}
			if _, ok := held[m.Name]; !ok {
				out = append(out, m.Name)
			}
		}
		return out
	}
	t.reg.GaugeFunc("cairn.catalog.replicas_missing", "live members whose catalog state this agent does not hold (0: converged)", func() float64 {
		_, ms := ml.Members(nil)
		return float64(len(missing(ms, cat.Replicas())))
	})
	timer := t.reg.Timer("cairn.catalog.convergence", "time from a live member being seen without its catalog state here to the state arriving").With()
	return part{"catalog convergence metrics", func(ctx context.Context) error {
		// Each live member is timed once per time it is live: from when
		// this loop first sees it live to when its state is held here
		// (0 when both were already true at the first look).
		seen := map[string]time.Time{} // live member -> when first seen live
		done := map[string]bool{}      // live members already timed
		for {
			ws := memdb.NewWatchSet()
			_, ms := ml.Members(ws)
			// A replica arriving changes the node table; its index
			// alone wakes this loop (reading every node on each change
			// made a registration cost grow with the catalog).
			cat.NodesIndex(ws)
			held := cat.Replicas()
			now := time.Now()
			live := map[string]bool{}
			for _, m := range ms {
				if m.Name == self || (m.Status != membership.StatusAlive && m.Status != membership.StatusLeaving) {
					continue
				}
				live[m.Name] = true
				if done[m.Name] {
					continue
				}
				if _, ok := seen[m.Name]; !ok {
					seen[m.Name] = now
				}
				if _, ok := held[m.Name]; ok {
					timer.Observe(now.Sub(seen[m.Name]))
					done[m.Name] = true
				}
			}
			for name := range seen {
				if !live[name] {
					delete(seen, name)
					delete(done, name)
				}
			}
			if err := ws.WatchCtx(ctx); err != nil {
				return nil
			}
		}
	}}, true
}

// raft exposes Raft's indexes and last contact, read at each scrape,
// and returns the part that counts state and leader changes.
func (t *telemetry) raft(store *kv.Server) (part, bool) {
	if t == nil || store == nil {
		return part{}, false
	}
	r := store.Raft()
	stat := func(key string) func() float64 {
		return func() float64 {
			v, _ := strconv.ParseFloat(r.Stats()[key], 64)
			return v
		}
	}
	t.reg.GaugeFunc("consul.raft.commit_index", "Raft commit index", stat("commit_index"))
	t.reg.GaugeFunc("consul.raft.applied_index", "Raft index applied to the store", stat("applied_index"))
	t.reg.GaugeFunc("consul.raft.last_index", "Raft last log index", stat("last_log_index"))
	t.reg.GaugeFunc("consul.raft.peers", "Raft voters and non-voters", stat("num_peers"))
	t.reg.GaugeFunc("consul.raft.last_contact", "milliseconds since this follower last heard from the leader (0 on the leader)", func() float64 {
		if r.State() == raft.Leader {
			return 0
		}
		lc := r.LastContact()
		if lc.IsZero() {
			return -1
		}
		return float64(time.Since(lc)) / float64(time.Millisecond)
	})
	t.reg.GaugeVecFunc("cairn.disk.condition", "1 for the data dir's disk condition now (ok, disk full, read-only file system, I/O error), 0 for the others", "condition", func() map[string]float64 {
		out := map[string]float64{"ok": 0, kv.DiskFull: 0, kv.DiskReadOnly: 0, kv.DiskIOError: 0}
		if c := store.DiskCondition(); c != nil {
			out[c.Kind] = 1
		} else {
			out["ok"] = 1
		}
		return out
	})
	t.reg.GaugeFunc("consul.raft.leader", "1 while this server leads", func() float64 {
		if r.State() == raft.Leader {
			return 1
		}
		return 0
	})
	return part{"raft metrics", func(ctx context.Context) error {
		obs := make(chan raft.Observation, 16)
		o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
			switch o.Data.(type) {
			case raft.LeaderObservation, raft.RaftState:
				return true
			}
			return false
		})
		r.RegisterObserver(o)
		defer r.DeregisterObserver(o)
		for {
			select {
			case <-ctx.Done():
				return nil
			case ob := <-obs:
				switch d := ob.Data.(type) {
				case raft.LeaderObservation:
					t.leaderChanges.Inc()
				case raft.RaftState:
					t.raftState.WithLabelValues(strings.ToLower(d.String())).Inc()
				}
			}
		}
	}}, true
}
