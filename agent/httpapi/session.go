package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
)

// lockDelayMinThreshold: a LockDelay below this many nanoseconds is taken
// as seconds. Consul does this (structs.lockDelayMinThreshold) because
// users send 5 meaning five seconds; it applies to numbers and to
// duration strings alike, so "20ns" is 20s.
const lockDelayMinThreshold = 1000

// sessionIn is the body of PUT /v1/session/create. Pointers tell an
// absent list from an empty one: Consul gives them different meanings.
type sessionIn struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage // "15s", or a number (see lockDelayMinThreshold)
	Behavior      string
	TTL           string
	Checks        *[]string // legacy: node check IDs
	NodeChecks    *[]string
	ServiceChecks []kv.ServiceCheck
}

// sessionOut is Consul's session entry as /v1/session/* answer it.
// The legacy Checks field is never filled: Consul answers it nil since
// NodeChecks and ServiceChecks replaced it.
type sessionOut struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []kv.ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

func toSessionOut(s *kv.Session) sessionOut {
	return sessionOut{
		ID:            s.ID,
		Name:          s.Name,
		Node:          s.Node,
		LockDelay:     s.LockDelay,
		Behavior:      s.Behavior,
		TTL:           s.TTL,
		NodeChecks:    s.NodeChecks,
		ServiceChecks: s.ServiceChecks,
		CreateIndex:   s.CreateIndex,
		ModifyIndex:   s.ModifyIndex,
	}
}

// toSessionList is a list answer: always an array, [] when empty, as Consul
// answers ("Use empty list instead of nil").
func toSessionList(ss []*kv.Session) []sessionOut {
	out := make([]sessionOut, 0, len(ss))
	for _, s := range ss {
		if s != nil {
			out = append(out, toSessionOut(s))
		}
	}
	return out
}

// sessionCreate serves PUT /v1/session/create: the body is optional;
// defaults are Consul's (this node, serfHealth, lock-delay 15s, release).
func (h *handler) sessionCreate(c *call) error {
	body, err := readBody(c, maxBodySize, "a session")
	if err != nil {
		return err
	}
	s, err := h.decodeSession(body)
	if err != nil {
		return err
	}
	// Consul's Session.Apply: session write on the session's node.
	if err := c.allow(acl.Session, s.Node, acl.Write); err != nil {
		return err
	}
	if err := h.checkSessionChecks(s); err != nil {
		return err
	}
	id, err := h.store.CreateSession(c.ctx, s)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, struct{ ID string }{id})
}

// checkSessionChecks refuses a session whose checks are not registered
// on its node (by the agent or through /v1/catalog/register) or are
// critical, with Consul's texts. serfHealth is membership's: every live
// node has it.
func (h *handler) checkSessionChecks(s kv.Session) error {
	ids := make([]string, 0, len(s.NodeChecks)+len(s.ServiceChecks))
	for _, id := range s.NodeChecks {
		if id != kv.NodeHealthCheck {
			ids = append(ids, id)
		}
	}
	for _, sc := range s.ServiceChecks {
		ids = append(ids, sc.ID)
	}
	if len(ids) == 0 || h.catalog == nil {
		return nil
	}
	_, checks := h.catalog.NodeChecks(nil, s.Node)
	for _, id := range ids {
		i := slices.IndexFunc(checks, func(c *catalog.Check) bool { return c.CheckID == id })
		if i < 0 {
			return badRequest("Missing check '%s' registration", id)
		}
		if checks[i].Status == catalog.StatusCritical {
			return badRequest("Check '%s' is in critical state", id)
		}
	}
	return nil
}

// decodeSession turns a create body into the session to create, with
// Consul's defaults and its handling of the legacy Checks field
// (session_endpoint.go fixupEmptySessionChecks).
func (h *handler) decodeSession(body []byte) (kv.Session, error) {
	s := kv.Session{
		Node:      h.self.NodeName,
		LockDelay: kv.DefaultLockDelay,
		Behavior:  kv.BehaviorRelease,
	}
	checks := []string{kv.NodeHealthCheck}
	nodeChecks := []string{kv.NodeHealthCheck}
	if len(bytes.TrimSpace(body)) > 0 {
		var in sessionIn
		if err := json.Unmarshal(body, &in); err != nil {
			return s, badRequest("Request decode failed: %v", err)
		}
		if in.Name != "" {
			s.Name = in.Name
		}
		if in.Node != "" {
			s.Node = in.Node
		}
		if in.Behavior != "" {
			s.Behavior = in.Behavior
		}
		s.TTL = in.TTL
		if d, ok, err := parseLockDelay(in.LockDelay); err != nil {
			return s, badRequest("Request decode failed: %v", err)
		} else if ok {
			s.LockDelay = d
		}
		if in.Checks != nil {
			checks = *in.Checks
		}
		if in.NodeChecks != nil {
			nodeChecks = *in.NodeChecks
		}
		s.ServiceChecks = in.ServiceChecks
	}
	switch {
	case len(checks) == 0:
		// "Checks": [] has always meant "no node checks".
		nodeChecks = []string{}
	case len(checks) == 1 && checks[0] == kv.NodeHealthCheck:
		checks = nil // the default; NodeChecks decides
	case len(nodeChecks) == 0:
		checks = nil
	}
	s.NodeChecks = make([]string, 0, len(nodeChecks)+len(checks))
	for _, id := range append(nodeChecks, checks...) {
		if !slices.Contains(s.NodeChecks, id) {
			s.NodeChecks = append(s.NodeChecks, id)
		}
	}
	return s, nil
}

// parseLockDelay reads LockDelay as Consul does: a duration string or a
// number of nanoseconds, either taken as seconds below 1000.
func parseLockDelay(raw json.RawMessage) (time.Duration, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var d time.Duration
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, fmt.Errorf("LockDelay %s: %v", raw, err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, false, fmt.Errorf("LockDelay %q is not a duration; use e.g. \"15s\" or a number of seconds", s)
		}
		d = v
	} else {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, false, fmt.Errorf("LockDelay %s is neither a duration string nor a number; use e.g. \"15s\" or 15", raw)
		}
		if math.IsNaN(f) || f < 0 || f >= math.MaxInt64 {
			return 0, false, fmt.Errorf("LockDelay %s is out of range; use a number of seconds from 0 to 60, or a duration such as \"15s\"", raw)
		}
		d = time.Duration(f)
	}
	if d < 0 {
		return 0, false, fmt.Errorf("LockDelay %v is negative; use a duration from 0s to 60s", d)
	}
	if d < lockDelayMinThreshold {
		d *= time.Second
	}
	return d, true, nil
}

// sessionID takes the session ID from the path, Consul's "Missing session"
// when there is none.
func sessionID(c *call) (string, error) {
	if c.arg == "" {
		return "", badRequest("Missing session")
	}
	return c.arg, nil
}

// sessionDestroy serves PUT /v1/session/destroy/<id>; destroying a session
// that does not exist succeeds, as in Consul.
func (h *handler) sessionDestroy(c *call) error {
	id, err := sessionID(c)
	if err != nil {
		return err
	}
	if err := h.checkSessionWrite(c, id); err != nil {
		return err
	}
	if err := h.store.DestroySession(c.ctx, id); err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, true)
}

// sessionRenew serves PUT /v1/session/renew/<id>: [session], or 404 with
// Consul's text when it does not exist (the client reads that as expired).
func (h *handler) sessionRenew(c *call) error {
	id, err := sessionID(c)
	if err != nil {
		return err
	}
	if err := h.checkSessionWrite(c, id); err != nil {
		return err
	}
	s, err := h.store.RenewSession(c.ctx, id)
	if err == nil && s == nil {
		err = fmt.Errorf("%w: %q", kv.ErrSessionNotFound, id)
	}
	if errors.Is(err, kv.ErrSessionNotFound) {
		err = withReason(err, fmt.Sprintf("Session id '%s' not found", id))
	}
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, []sessionOut{toSessionOut(s)})
}

// sessionInfo serves GET /v1/session/info/<id>: [session], or [] (200)
// when it does not exist.
func (h *handler) sessionInfo(c *call) error {
	id, err := sessionID(c)
	if err != nil {
		return err
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	m, s, err := h.store.SessionInfo(c.ctx, o, id)
	if err != nil {
		return err
	}
	ss := filterSessions(c, []*kv.Session{s})
	setMeta(c.w, m, o)
	return writeJSON(c.w, http.StatusOK, toSessionList(ss))
}

// sessionList serves GET /v1/session/list.
func (h *handler) sessionList(c *call) error {
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	m, ss, err := h.store.Sessions(c.ctx, o)
	if err != nil {
		return err
	}
	ss = filterSessions(c, ss)
	setMeta(c.w, m, o)
	return writeJSON(c.w, http.StatusOK, toSessionList(ss))
}

// sessionNode serves GET /v1/session/node/<node>.
func (h *handler) sessionNode(c *call) error {
	if c.arg == "" {
		return badRequest("Missing node name")
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	m, ss, err := h.store.NodeSessions(c.ctx, o, c.arg)
	if err != nil {
		return err
	}
	ss = filterSessions(c, ss)
	setMeta(c.w, m, o)
	return writeJSON(c.w, http.StatusOK, toSessionList(ss))
}

// checkSessionWrite is Consul's check for destroying or renewing a
// session: session write on the node the session belongs to. A session
// that does not exist needs no permission (destroy succeeds, renew is a
// 404), as in Consul.
func (h *handler) checkSessionWrite(c *call, id string) error {
	if c.aclOff() {
		return nil
	}
	if _, err := c.authorizer(); err != nil {
		return err
	}
	_, s, err := h.store.SessionInfo(c.ctx, kv.QueryOptions{}, id)
	if err != nil || s == nil {
		return err
	}
	return c.allow(acl.Session, s.Node, acl.Write)
}

// filterSessions keeps the sessions the token may read (session read on
// their node; Consul's aclFilter.filterSessions).
func filterSessions(c *call, ss []*kv.Session) []*kv.Session {
	ss = slices.DeleteFunc(slices.Clone(ss), func(s *kv.Session) bool { return s == nil })
	return filterList(c, ss, func(s *kv.Session) bool { return c.can(acl.Session, s.Node, acl.Read) })
}
