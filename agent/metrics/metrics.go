// Package metrics owns an agent's metrics: one Prometheus registry per
// agent (never the global one), the instruments the parts record into,
// and the two ways /v1/agent/metrics shows them: Consul's JSON
// (api.MetricsInfo: Gauges, Points, Counters, Samples) and, with
// ?format=prometheus, the Prometheus text format.
//
// Metric names are Consul's (consul.raft.commitTime, consul.kvs.apply,
// ...) so dashboards and alerts written for Consul keep working; in
// Prometheus they are spelled with underscores (consul_raft_commitTime),
// as Consul's own Prometheus sink spells them. Timers are in
// milliseconds, as Consul's are. It imports nothing of cairn.
package metrics

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// TimerBuckets are the histogram buckets of every timer, in
// milliseconds: from a memory read (0.05 ms) to a slow Raft commit.
var timerBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// Registry is one agent's metrics. Its methods that create instruments
// are called while the agent is wired (one goroutine); the instruments
// themselves are safe for concurrent use, and cheap: an atomic add.
type Registry struct {
	reg      *prometheus.Registry
	hostname string

	mu    sync.Mutex
	names map[string]string // Prometheus name -> Consul's dotted name
}

// New returns a registry with Go runtime and process metrics and
// Consul's runtime gauges (consul.runtime.alloc_bytes, ...). hostname
// goes into the gauges' JSON names as Consul puts it there
// (consul.<hostname>.runtime.alloc_bytes, telemetry.disable_hostname
// off); empty means os.Hostname.
func New(hostname string) *Registry {
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	r := &Registry{reg: prometheus.NewRegistry(), hostname: hostname, names: map[string]string{}}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.runtimeGauges()
	return r
}

// promName turns Consul's dotted name into a Prometheus one and records
// the pair for the JSON view.
func (r *Registry) promName(name string) string {
	p := strings.NewReplacer(".", "_", "-", "_").Replace(name)
	r.mu.Lock()
	r.names[p] = name
	r.mu.Unlock()
	return p
}

// Counter is a counter named name (Consul's dotted form) with labels.
func (r *Registry) Counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: r.promName(name), Help: help}, labels)
	r.reg.MustRegister(c)
	return c
}

// Gauge is a gauge named name with labels, set by its owner.
func (r *Registry) Gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: r.promName(name), Help: help}, labels)
	r.reg.MustRegister(g)
	return g
}

// GaugeFunc is a gauge read from f at each scrape; f is called from the
// scraping request's goroutine and must be safe for that.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: r.promName(name), Help: help}, f))
}

// GaugeVecFunc is a family of gauges read at each scrape: f returns the
// value of each label value (one label). Label values absent from the
// answer are not reported.
func (r *Registry) GaugeVecFunc(name, help, label string, f func() map[string]float64) {
	r.reg.MustRegister(&vecFunc{desc: prometheus.NewDesc(r.promName(name), help, []string{label}, nil), typ: prometheus.GaugeValue, f: f})
}

// CounterVecFunc is a family of counters kept by their owner (a part's
// own Stats), read at each scrape, one label.
func (r *Registry) CounterVecFunc(name, help, label string, f func() map[string]float64) {
	r.reg.MustRegister(&vecFunc{desc: prometheus.NewDesc(r.promName(name), help, []string{label}, nil), typ: prometheus.CounterValue, f: f})
}

// Timer is a histogram of durations in milliseconds, with labels.
func (r *Registry) Timer(name, help string, labels ...string) *TimerVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: r.promName(name), Help: help + " (milliseconds)", Buckets: timerBuckets}, labels)
	r.reg.MustRegister(h)
	return &TimerVec{h: h}
}

// TimerVec records durations under label values.
type TimerVec struct{ h *prometheus.HistogramVec }

// With returns the timer of the label values, to keep on a hot path.
func (t *TimerVec) With(values ...string) Timer { return Timer{t.h.WithLabelValues(values...)} }

// Since records the time since start under the label values.
func (t *TimerVec) Since(start time.Time, values ...string) {
	t.h.WithLabelValues(values...).Observe(ms(time.Since(start)))
}

// Timer is one timer's series.
type Timer struct{ o prometheus.Observer }

// Observe records d.
func (t Timer) Observe(d time.Duration) { t.o.Observe(ms(d)) }

// Since records the time since start.
func (t Timer) Since(start time.Time) { t.o.Observe(ms(time.Since(start))) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type vecFunc struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	f    func() map[string]float64
}

func (v *vecFunc) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }
func (v *vecFunc) Collect(ch chan<- prometheus.Metric) {
	for label, val := range v.f() {
		ch <- prometheus.MustNewConstMetric(v.desc, v.typ, val, label)
	}
}

// runtimeGauges are Consul's consul.runtime.* gauges, read once per
// scrape.
func (r *Registry) runtimeGauges() {
	names := []struct{ name, help string }{
		{"consul.runtime.alloc_bytes", "bytes of allocated heap objects"},
		{"consul.runtime.sys_bytes", "bytes obtained from the OS"},
		{"consul.runtime.malloc_count", "heap objects allocated"},
		{"consul.runtime.free_count", "heap objects freed"},
		{"consul.runtime.heap_objects", "heap objects in use"},
		{"consul.runtime.total_gc_pause_ns", "cumulative GC pause"},
		{"consul.runtime.total_gc_runs", "completed GC cycles"},
		{"consul.runtime.num_goroutines", "goroutines"},
	}
	descs := make([]*prometheus.Desc, len(names))
	for i, n := range names {
		descs[i] = prometheus.NewDesc(r.promName(n.name), n.help, nil, nil)
	}
	r.reg.MustRegister(runtimeCollector(descs))
}

type runtimeCollector []*prometheus.Desc

func (c runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c {
		ch <- d
	}
}

func (c runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	vals := []float64{float64(m.Alloc), float64(m.Sys), float64(m.Mallocs), float64(m.Frees), float64(m.HeapObjects),
		float64(m.PauseTotalNs), float64(m.NumGC), float64(runtime.NumGoroutine())}
	for i, d := range c {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, vals[i])
	}
}

// Handler serves GET /v1/agent/metrics: Consul's JSON, or the
// Prometheus text format with ?format=prometheus (what a scrape job
// with params: {format: [prometheus]} asks for).
func (r *Registry) Handler() http.Handler {
	prom := promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Get("format") == "prometheus" {
			prom.ServeHTTP(w, req)
			return
		}
		if f := req.URL.Query().Get("format"); f != "" {
			http.Error(w, fmt.Sprintf("unknown ?format=%q; use format=prometheus, or no format for Consul's JSON", f), http.StatusBadRequest)
			return
		}
		info, err := r.Snapshot()
		if err != nil {
			http.Error(w, "gather metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, info)
	})
}

// Gatherer is the registry, for tests and `cairn debug`.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Info is Consul's /v1/agent/metrics answer (api.MetricsInfo).
type Info struct {
	Timestamp string
	Gauges    []Gauge
	Points    []Point
	Counters  []Sampled
	Samples   []Sampled
}

// Gauge is api.GaugeValue.
type Gauge struct {
	Name   string
	Value  float32
	Labels map[string]string
}

// Point is api.PointValue (cairn reports none; Consul's are key/value
// emits).
type Point struct {
	Name   string
	Points []float32
}

// Sampled is api.SampledValue. Counters are cumulative since the agent
// started (Consul's cover its last 10 s interval): Count and Sum are the
// total. For timers, Min and Max are the bounds of the lowest and
// highest histogram bucket with an observation, and Stddev is
// estimated from the buckets' midpoints.
type Sampled struct {
	Name   string
	Count  int
	Sum    float64
	Min    float64
	Max    float64
	Mean   float64
	Stddev float64
	Labels map[string]string
}

// Snapshot gathers every metric into Consul's JSON shape.
func (r *Registry) Snapshot() (Info, error) {
	fams, err := r.reg.Gather()
	info := Info{
		Timestamp: time.Now().UTC().Truncate(10 * time.Second).Format("2006-01-02 15:04:05 -0700 MST"),
		Gauges:    []Gauge{}, Points: []Point{}, Counters: []Sampled{}, Samples: []Sampled{},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fam := range fams {
		name, ok := r.names[fam.GetName()]
		if !ok {
			name = strings.ReplaceAll(fam.GetName(), "_", ".")
		}
		for _, m := range fam.GetMetric() {
			labels := labelMap(m.GetLabel())
			switch fam.GetType() {
			case dto.MetricType_GAUGE:
				info.Gauges = append(info.Gauges, Gauge{Name: r.gaugeName(name), Value: float32(m.GetGauge().GetValue()), Labels: labels})
			case dto.MetricType_UNTYPED:
				info.Gauges = append(info.Gauges, Gauge{Name: r.gaugeName(name), Value: float32(m.GetUntyped().GetValue()), Labels: labels})
			case dto.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				s := Sampled{Name: name, Count: int(v), Sum: v, Labels: labels}
				if s.Count > 0 {
					s.Mean = s.Sum / float64(s.Count)
					s.Min, s.Max = s.Mean, s.Mean
				}
				info.Counters = append(info.Counters, s)
			case dto.MetricType_HISTOGRAM:
				info.Samples = append(info.Samples, histogramSample(name, labels, m.GetHistogram()))
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				s := Sampled{Name: name, Count: int(sm.GetSampleCount()), Sum: sm.GetSampleSum(), Labels: labels}
				if s.Count > 0 {
					s.Mean = s.Sum / float64(s.Count)
				}
				info.Samples = append(info.Samples, s)
			}
		}
	}
	return info, err
}

// gaugeName puts the host name after the service prefix, as Consul's
// go-metrics does for gauges: consul.<host>.runtime.alloc_bytes.
func (r *Registry) gaugeName(name string) string {
	if r.hostname == "" {
		return name
	}
	if rest, ok := strings.CutPrefix(name, "consul."); ok {
		return "consul." + r.hostname + "." + rest
	}
	return name
}

func labelMap(pairs []*dto.LabelPair) map[string]string {
	if len(pairs) == 0 {
		return map[string]string{}
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.GetName()] = p.GetValue()
	}
	return m
}

func histogramSample(name string, labels map[string]string, h *dto.Histogram) Sampled {
	s := Sampled{Name: name, Count: int(h.GetSampleCount()), Sum: h.GetSampleSum(), Labels: labels}
	if s.Count == 0 {
		return s
	}
	s.Mean = s.Sum / float64(s.Count)
	buckets := h.GetBucket()
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].GetUpperBound() < buckets[j].GetUpperBound() })
	var prevCount uint64
	prevBound := 0.0
	first := true
	var sq float64
	for _, b := range buckets {
		n := b.GetCumulativeCount() - prevCount
		if n > 0 {
			if first {
				s.Min, first = prevBound, false
			}
			s.Max = b.GetUpperBound()
			mid := (prevBound + b.GetUpperBound()) / 2
			sq += float64(n) * (mid - s.Mean) * (mid - s.Mean)
		}
		prevCount, prevBound = b.GetCumulativeCount(), b.GetUpperBound()
	}
	if over := h.GetSampleCount() - prevCount; over > 0 {
		// Above the last bucket: the mean of those is the best bound known.
		if first {
			s.Min = prevBound
		}
		s.Max = math.Max(prevBound, s.Mean)
		sq += float64(over) * (prevBound - s.Mean) * (prevBound - s.Mean)
	}
	s.Stddev = math.Sqrt(sq / float64(s.Count))
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.Encode(v) //nolint:errcheck // the client went away; nothing to tell it
}
