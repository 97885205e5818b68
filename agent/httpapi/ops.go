package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/kv"
)

// Ops is what the operator endpoints need (metrics, snapshots, reload,
// monitor, host, Raft peer removal and leadership transfer). Every field is
// optional: an endpoint whose part is missing answers 501 and says so.
type Ops struct {
	// Metrics serves GET /v1/agent/metrics (JSON, ?format=prometheus).
	Metrics http.Handler
	// Observer, when set, is told about every request (HTTP metrics).
	Observer Observer
	// Snapshots saves and restores the replicated state (/v1/snapshot).
	Snapshots Snapshots
	// Reload re-reads the agent's configuration (PUT /v1/agent/reload);
	// its error says what was wrong with the new one, which is refused.
	Reload func(ctx context.Context) error
	// Logs streams the agent's log (/v1/agent/monitor).
	Logs LogStream
	// Host describes the machine (/v1/agent/host).
	Host func() (any, error)
	// Raft changes the Raft configuration and reports server health.
	Raft RaftOperator
	// Profiling reports whether Go's CPU profile and execution trace
	// (/debug/pprof/profile and /trace?seconds=N) are served: they cost
	// CPU for as long as they run. Asked at each request, so a reload can
	// turn them on or off; nil or false, they answer 404 with what to set.
	Profiling func() bool
}

// Observer is told about every request, from the request's goroutine,
// after it is answered; it must not block. route is the endpoint's path
// pattern ("/v1/kv/"), not the request's path, so label sets stay small.
// Blocking reports a blocking query (?index=) starting (+1) and ending
// (-1).
type Observer interface {
	Request(method, route string, status int, d time.Duration)
	Blocking(delta int)
}

// Snapshots is what /v1/snapshot needs: a server's Raft store.
type Snapshots interface {
	// Save writes an archive of the state to w (streamed); meta is known
	// before the first byte is written, through started.
	Save(ctx context.Context, w io.Writer, started func(index uint64)) error
	// Restore replaces the state with the archive's.
	Restore(ctx context.Context, archive io.Reader) error
}

// LogStream is the agent's log as a stream (logging.Logs).
type LogStream interface {
	Subscribe(level slog.Level, json bool) (lines <-chan []byte, dropped func() uint64, cancel func())
}

// RaftOperator is what /v1/operator/raft/peer and transfer-leader need
// (autopilot health is autopilot.go's).
type RaftOperator interface {
	RemovePeer(ctx context.Context, id, address string) error
	// TransferLeader hands leadership to id, or to the most up-to-date
	// follower when id is "".
	TransferLeader(ctx context.Context, id string) error
}

var errNotHere = errors.New("not available on this agent")

func notHere(what string) error {
	return &httpError{code: http.StatusNotImplemented, msg: what + " is " + errNotHere.Error()}
}

// opsRoutes are the operator endpoints.
func (h *handler) opsRoutes() []route {
	get, put := []string{http.MethodGet}, []string{http.MethodPut}
	return []route{
		{"/v1/agent/metrics", get, h.agentMetrics},
		{"/v1/agent/reload", put, h.agentReload},
		{"/v1/agent/monitor", get, h.agentMonitor},
		{"/v1/agent/host", get, h.agentHost},
		{"/v1/snapshot", []string{http.MethodGet, http.MethodPut}, h.snapshot},
		{"/v1/operator/raft/peer", []string{http.MethodDelete}, h.operatorRaftPeer},
		{"/v1/operator/raft/transfer-leader", []string{http.MethodPost, http.MethodPut}, h.operatorRaftTransfer},
		// Go's profiles, as Consul serves them for `consul debug`. The
		// goroutine and heap ones cost a moment to take and are always
		// there; CPU profiles and traces run for seconds and need
		// enable_debug (or ACLs), as in Consul.
		{"/debug/pprof/goroutine", get, pprofHandler("goroutine")},
		{"/debug/pprof/heap", get, pprofHandler("heap")},
		{"/debug/pprof/profile", get, h.timedProfile("profile", 30*time.Second, pprof.StartCPUProfile, pprof.StopCPUProfile)},
		{"/debug/pprof/trace", get, h.timedProfile("trace", time.Second, trace.Start, trace.Stop)},
	}
}

// maxProfile bounds ?seconds= of a CPU profile or trace: long enough for
// any capture worth reading, short enough that a typo does not leave the
// agent paying for one for hours.
const maxProfile = 5 * time.Minute

// timedProfile serves a profile that records for ?seconds= (def when
// absent), as net/http/pprof's Profile and Trace do; the client going
// away ends it early.
func (h *handler) timedProfile(name string, def time.Duration, start func(io.Writer) error, stop func()) func(c *call) error {
	return func(c *call) error {
		if err := c.allow(acl.Operator, "", acl.Read); err != nil {
			return err
		}
		if h.ops.Profiling == nil || !h.ops.Profiling() {
			return &httpError{code: http.StatusNotFound, msg: "/debug/pprof/" + name + " is off: set enable_debug = true in the agent's config (it is on under -dev), or enable ACLs and use a token with operator read"}
		}
		d := def
		if v := c.query.Get("seconds"); v != "" {
			secs, err := strconv.ParseFloat(v, 64)
			if err != nil || secs <= 0 || secs > maxProfile.Seconds() {
				return badRequest("seconds=%q is not a duration this agent profiles for; give a number of seconds above 0 and at most %v", v, maxProfile.Seconds())
			}
			d = time.Duration(secs * float64(time.Second))
		}
		c.w.Header().Set("Content-Type", "application/octet-stream")
		c.w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		if err := start(c.w); err != nil {
			// Nothing was written yet: Go runs one of each at a time.
			return &httpError{code: http.StatusConflict, msg: "could not start the " + name + ": " + err.Error() + " (is another one running? try again when it ends)"}
		}
		waitFor(c.ctx, d)
		stop()
		return nil
	}
}

// waitFor returns after d, or sooner when ctx ends.
func waitFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// pprofHandler writes a runtime profile (runtime/pprof rather than
// net/http/pprof, whose import registers handlers on the default mux);
// ?debug=1 or 2 asks for text, as net/http/pprof's does.
func pprofHandler(name string) func(c *call) error {
	return func(c *call) error {
		// Consul's /debug/pprof: operator read.
		if err := c.allow(acl.Operator, "", acl.Read); err != nil {
			return err
		}
		debug, _ := strconv.Atoi(c.query.Get("debug"))
		if debug > 0 {
			c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			c.w.Header().Set("Content-Type", "application/octet-stream")
		}
		return pprof.Lookup(name).WriteTo(c.w, debug)
	}
}

func (h *handler) agentMetrics(c *call) error {
	// Consul's AgentMetrics: agent read on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Read); err != nil {
		return err
	}
	if h.ops.Metrics == nil {
		return notHere("/v1/agent/metrics (metrics are off: -disable-metrics)")
	}
	h.ops.Metrics.ServeHTTP(c.w, c.r)
	return nil
}

func (h *handler) agentReload(c *call) error {
	// Consul's AgentReload: agent write on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Write); err != nil {
		return err
	}
	if h.ops.Reload == nil {
		return notHere("reload")
	}
	if err := h.ops.Reload(c.ctx); err != nil {
		return &httpError{code: http.StatusInternalServerError, msg: "Failed reloading config: " + err.Error()}
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) agentHost(c *call) error {
	// Consul's AgentHost: operator read.
	if err := c.allow(acl.Operator, "", acl.Read); err != nil {
		return err
	}
	if h.ops.Host == nil {
		return notHere("/v1/agent/host")
	}
	info, err := h.ops.Host()
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, info)
}

// agentMonitor streams log lines, one per line, until the client goes
// away (Consul's /v1/agent/monitor: ?loglevel=, ?logjson).
func (h *handler) agentMonitor(c *call) error {
	// Consul's AgentMonitor: agent read on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Read); err != nil {
		return err
	}
	if h.ops.Logs == nil {
		return notHere("/v1/agent/monitor")
	}
	level, err := logging.ParseLevel(c.query.Get("loglevel"))
	if err != nil {
		return badRequest("Unknown log level: %v", err)
	}
	lines, _, cancel := h.ops.Logs.Subscribe(level, has(c.query, "logjson") && c.query.Get("logjson") != "false")
	defer cancel()
	rc := http.NewResponseController(c.w)
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	// Flushing at once lets the client see the 200 before any line.
	if err := rc.Flush(); err != nil {
		return nil
	}
	bw := bufio.NewWriter(c.w)
	for {
		select {
		case <-c.ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			bw.Write(line)
			bw.WriteByte('\n')
			// Send what is queued together, then flush.
			for more := true; more; {
				select {
				case l, ok := <-lines:
					if !ok {
						more = false
						break
					}
					bw.Write(l)
					bw.WriteByte('\n')
				default:
					more = false
				}
			}
			if bw.Flush() != nil || rc.Flush() != nil {
				return nil
			}
		}
	}
}

// snapshot is GET (save) and PUT (restore) /v1/snapshot.
func (h *handler) snapshot(c *call) error {
	// Consul's Snapshot endpoint: management only (acl write), since a
	// snapshot holds every secret.
	if err := c.allow(acl.ACL, "", acl.Write); err != nil {
		return err
	}
	if h.ops.Snapshots == nil {
		return notHere("/v1/snapshot (snapshots are taken on servers; point -http-addr at a server)")
	}
	if c.r.Method == http.MethodPut {
		if err := h.ops.Snapshots.Restore(c.ctx, c.r.Body); err != nil {
			return err
		}
		c.w.WriteHeader(http.StatusOK)
		return nil
	}
	opts, err := readOptions(c.query)
	if err != nil {
		return err
	}
	wrote := false
	err = h.ops.Snapshots.Save(c.ctx, c.w, func(index uint64) {
		wrote = true
		leader := h.store.Leader() != ""
		setMeta(c.w, kv.QueryMeta{Index: index, KnownLeader: leader}, opts)
		c.w.Header().Set("Content-Type", "application/x-gzip")
		c.w.WriteHeader(http.StatusOK)
	})
	if err != nil && wrote {
		// The status is out; cutting the stream short is all that is
		// left, and the archive's sums make the cut visible.
		h.log.Error("httpapi: snapshot stream failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	return err
}

func (h *handler) operatorRaftPeer(c *call) error {
	// Consul's Operator.RaftRemovePeerBy*: operator write.
	if err := c.allow(acl.Operator, "", acl.Write); err != nil {
		return err
	}
	if h.ops.Raft == nil {
		return notHere("raft peer removal (a server's)")
	}
	id, addr := c.query.Get("id"), c.query.Get("address")
	if (id == "") == (addr == "") {
		return badRequest("Must specify either ?id or ?address, not both or neither")
	}
	if err := h.ops.Raft.RemovePeer(c.ctx, id, addr); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) operatorRaftTransfer(c *call) error {
	// Consul's Operator.RaftLeaderTransfer: operator write.
	if err := c.allow(acl.Operator, "", acl.Write); err != nil {
		return err
	}
	if h.ops.Raft == nil {
		return notHere("raft leadership transfer (a server's)")
	}
	if err := h.ops.Raft.TransferLeader(c.ctx, c.query.Get("id")); err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, struct{ Success bool }{true})
}

// observed wraps the handler with the Observer: a status-recording
// writer that keeps Flush (the monitor stream) and Unwrap.
//
// At debug level it also logs each request, as Consul's agent.http does
// ("Request finished"); nothing is logged or wrapped when neither is on.
func (h *handler) observed(o Observer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		debug := h.log.Enabled(r.Context(), slog.LevelDebug)
		if o == nil && !debug {
			h.ServeHTTP(w, r)
			return
		}
		id := requestID(w, r)
		if o == nil {
			o = nopObserver{}
		}
		start := time.Now()
		route := "other"
		rt, arg, ok := h.match(r.URL.Path)
		if ok {
			route = rt.path
		}
		blocking := r.Method == http.MethodGet && blockingIndex(r.URL.RawQuery)
		if blocking {
			o.Blocking(1)
			defer o.Blocking(-1)
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			d := time.Since(start)
			o.Request(r.Method, route, sw.status, d)
			if debug && route != "/v1/agent/monitor" {
				h.log.Debug("agent.http: Request finished", "method", r.Method, "url", r.URL.Path, "from", r.RemoteAddr, "status", sw.status, "latency", d, logging.RequestIDKey, id)
			}
		}()
		h.serve(sw, r, id, matched{rt, arg, ok})
	})
}

// blockingIndex reports whether a raw query has ?index= with a value
// other than 0 (a blocking query), without parsing the whole query.
func blockingIndex(raw string) bool {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if v, ok := strings.CutPrefix(kv, "index="); ok {
			return v != "" && v != "0"
		}
	}
	return false
}

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration) {}
func (nopObserver) Blocking(int)                               {}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
