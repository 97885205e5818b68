package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/kv"
)

// errNoDCPath is Consul's answer (500, structs.ErrNoDCPath) to a ?dc=
// naming a datacenter this agent cannot reach.
var errNoDCPath = errors.New("No path to datacenter")

// noLeaderText is Consul's body for requests that need a leader when there
// is none (structs.ErrNoLeader). Clients match on it to retry, so every
// such answer starts with it.
const noLeaderText = "No cluster leader"

// OutcomeHeader is set to "unknown" on a 503 whose write may have been
// applied (kv.ErrOutcomeUnknown): read the key before sending it again.
const OutcomeHeader = "X-Cairn-Outcome"

// httpError is an answer decided by the endpoint itself: a bad parameter,
// a body too large. Its text is the whole body.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(format, args...)}
}

// methodNotAllowedError is Consul's MethodNotAllowedError: 405, an Allow
// header and the body "method X not allowed".
type methodNotAllowedError struct {
	method string
	allow  []string
}

func (e *methodNotAllowedError) Error() string {
	return fmt.Sprintf("method %s not allowed", e.method)
}

// reasonError keeps a store error (for its status code) but shows the
// client Consul's text for it, e.g. "Session id 'x' not found".
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.reason }
func (e *reasonError) Unwrap() error { return e.err }

// withReason gives err the body text reason, keeping its status code.
func withReason(err error, reason string) error {
	return &reasonError{reason: reason, err: err}
}

// statusOf is the one place that maps errors to status codes and bodies.
func statusOf(err error) (int, string) {
	msg := err.Error()
	var re *reasonError
	if errors.As(err, &re) {
		msg = re.reason
	}
	var he *httpError
	var me *methodNotAllowedError
	switch {
	case errors.Is(err, acl.ErrPermissionDenied), errors.Is(err, acl.ErrNotFound):
		// Consul's HTTP layer: 403 with the error's text.
		return http.StatusForbidden, err.Error()
	case errors.As(err, &he):
		return he.code, he.msg
	case errors.As(err, &me):
		return http.StatusMethodNotAllowed, me.Error()
	case errors.Is(err, kv.ErrOutcomeUnknown):
		// Before ErrNoLeader: a lost outcome is never "no leader",
		// which promises nothing was written.
		return http.StatusServiceUnavailable, msg
	case errors.Is(err, kv.ErrDisk):
		var de *kv.DiskError
		if errors.As(err, &de) && de.Kind == kv.DiskFull {
			return http.StatusInsufficientStorage, msg
		}
		return http.StatusServiceUnavailable, msg
	case errors.Is(err, kv.ErrTooManyQueries):
		return http.StatusTooManyRequests, msg
	case errors.Is(err, kv.ErrNoLeader):
		return http.StatusInternalServerError, noLeaderText + ": " + strings.TrimPrefix(msg, kv.ErrNoLeader.Error()+": ") + "; nothing was written; retry once a leader is elected (a majority of servers up and reaching each other)"
	case errors.Is(err, kv.ErrNotLeader):
		return http.StatusInternalServerError, noLeaderText + ": this server is not the Raft leader and could not reach it; retry, or send the request to the leader (GET /v1/status/leader)"
	case errors.Is(err, kv.ErrInvalidRequest):
		return http.StatusBadRequest, msg
	case errors.Is(err, kv.ErrSessionNotFound):
		return http.StatusNotFound, msg
	case errors.Is(err, kv.ErrTxnFailed):
		return http.StatusConflict, msg
	case errors.Is(err, catalog.ErrInvalid):
		return http.StatusBadRequest, msg
	case errors.Is(err, catalog.ErrNotFound):
		return http.StatusNotFound, msg
	case errors.Is(err, catalog.ErrNotOwner):
		return http.StatusForbidden, msg
	}
	return http.StatusInternalServerError, msg
}

// fail answers a failed request. A request whose context ended (its
// client went away, or the agent is stopping and cancelled it) gets no
// answer: the response is aborted, since returning without one would
// make net/http send an empty 200, which Consul's client reads as a
// write done, or a CAS or lock that did not take.
func (h *handler) fail(c *call, err error) {
	if c.ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		panic(http.ErrAbortHandler)
	}
	code, msg := statusOf(err)
	var me *methodNotAllowedError
	if errors.As(err, &me) {
		// RFC 9110: a 405 lists the methods the resource supports.
		c.w.Header().Set("Allow", strings.Join(me.allow, ","))
	}
	if errors.Is(err, kv.ErrOutcomeUnknown) {
		// Said apart from every other 503: the write may have been
		// applied (README: "Faults").
		c.w.Header().Set(OutcomeHeader, "unknown")
	}
	switch {
	case errors.Is(err, kv.ErrNoLeader), errors.Is(err, kv.ErrNotLeader), errors.Is(err, kv.ErrShutdown), errors.Is(err, kv.ErrOutcomeUnknown):
		// The cluster's state, not this request's fault: raft and
		// membership log the change once; a line per request during an
		// election or outage would bury it.
		h.log.Debug("httpapi: request failed", "method", c.r.Method, "path", c.r.URL.Path, "status", code, "err", err, logging.RequestIDKey, logging.RequestID(c.ctx))
	case code >= 500:
		h.log.Error("httpapi: request failed", "method", c.r.Method, "path", c.r.URL.Path, "status", code, "err", err, logging.RequestIDKey, logging.RequestID(c.ctx))
	default:
		h.log.Debug("httpapi: request refused", "method", c.r.Method, "path", c.r.URL.Path, "status", code, "err", err, logging.RequestIDKey, logging.RequestID(c.ctx))
	}
	writeText(c.w, code, msg)
}

// writeText answers with a plain-text body, as Consul answers errors.
func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprint(w, msg)
}
