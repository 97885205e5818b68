package catalog

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/checks"
)

// This agent's own entries: the agent API (/v1/agent/service/*,
// /v1/agent/check/*) and the catalog registrations it receives. Every
// change is validated, saved to the data dir, given the next version and
// applied to the read side before it returns, so a read right after a
// registration sees it; the publisher spreads it.

// CheckBufSize is the most output a check keeps, as in Consul; longer
// output is cut with a note saying how much there was.
const CheckBufSize = 4 * 1024

// Limits of Consul's service and node meta.
const (
	metaMaxPairs    = 64
	metaKeyMaxLen   = 128
	metaValueMaxLen = 512
)

// invalidError is a refused request; errors.Is matches ErrInvalid (or
// ErrNotOwner) and the text is what the user sees.
type invalidError struct {
	kind error
	msg  string
}

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return e.kind }

func invalid(format string, args ...any) error {
	return &invalidError{kind: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &invalidError{kind: ErrNotFound, msg: fmt.Sprintf(format, args...)}
}

func notOwner(format string, args ...any) error {
	return &invalidError{kind: ErrNotOwner, msg: fmt.Sprintf(format, args...)}
}

// RegisterService adds or replaces one of this agent's services with its
// checks, like PUT /v1/agent/service/register. The ID defaults to the
// name, a check's ID to "service:<id>" (":<n>" appended when there are
// several). Checks the service had before and def does not name are kept,
// unless replaceExistingChecks. Re-registering a check of the same type
// keeps its status.
func (c *Catalog) RegisterService(def ServiceDefinition, replaceExistingChecks bool) error {
	svc := def.Service.clone()
	if err := c.checkService(svc); err != nil {
		return err
	}
	defs := make([]checks.Definition, len(def.Checks))
	for i, d := range def.Checks {
		d = cloneDefinition(d)
		d.ServiceID = svc.ID
		if d.ID == "" {
			d.ID = "service:" + svc.ID
			if len(def.Checks) > 1 {
				d.ID += fmt.Sprintf(":%d", i+1)
			}
		}
		if d.Name == "" {
			d.Name = fmt.Sprintf("Service '%s' check", svc.Name)
		}
		if err := c.checkCheck(&d, true); err != nil {
			return err
		}
		defs[i] = d
	}
	for i := range defs {
		for j := range i {
			if defs[i].ID == defs[j].ID {
				return invalid("service %q: two of its checks have the ID %q; give each check its own CheckID", svc.ID, defs[i].ID)
			}
		}
	}
	return c.durable(c.registerService(svc, defs, replaceExistingChecks))
}

// registerService applies a validated service registration and returns
// the sequence number of its last change in the data dir.
func (c *Catalog) registerService(svc *Service, defs []checks.Definition, replaceExistingChecks bool) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range defs {
		if lc := c.checks[d.ID]; lc != nil && lc.def.ServiceID != svc.ID {
			return 0, invalid("check %q already belongs to %s; give this one another CheckID", d.ID, describeOwner(lc.def.ServiceID))
		}
	}
	var drop []string
	if replaceExistingChecks {
		for _, id := range c.checksOfLocked(svc.ID) {
			if !slices.ContainsFunc(defs, func(d checks.Definition) bool { return d.ID == id }) {
				drop = append(drop, id)
			}
		}
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.saveService(svc); err != nil {
			return 0, err
		}
		for _, d := range defs {
			if seq, err = c.store.saveCheck(d); err != nil {
				return 0, err
			}
		}
		for _, id := range drop {
			if seq, err = c.store.removeCheck(id); err != nil {
				return 0, err
			}
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	svc.Node = c.cfg.NodeName
	c.setServiceLocked(svc)
	for _, d := range defs {
		c.setCheckLocked(newLocalCheck(d, c.checks[d.ID]))
	}
	for _, id := range drop {
		c.deleteCheckLocked(id)
	}
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

func describeOwner(serviceID string) string {
	if serviceID == "" {
		return "the node"
	}
	return fmt.Sprintf("service %q", serviceID)
}

// DeregisterService removes one of this agent's services and its checks.
func (c *Catalog) DeregisterService(id string) error {
	return c.durable(c.deregisterService(id))
}

func (c *Catalog) deregisterService(id string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services[id] == nil {
		return 0, notFound("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)
	}
	drop := c.checksOfLocked(id)
	var seq uint64
	if c.store != nil {
		var err error
		for _, cid := range drop {
			if _, err = c.store.removeCheck(cid); err != nil {
				return 0, err
			}
		}
		if seq, err = c.store.removeService(id); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.deleteServiceLocked(id)
	for _, cid := range drop {
		c.deleteCheckLocked(cid)
	}
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

// RegisterCheck adds or replaces one of this agent's checks, like PUT
// /v1/agent/check/register: a node check, or a check of a service of
// this agent's (ServiceID). The ID defaults to the name.
func (c *Catalog) RegisterCheck(def checks.Definition) error {
	d := cloneDefinition(def)
	if d.Name == "" {
		return invalid("Missing check name: give the check a \"Name\"")
	}
	if d.ID == "" {
		d.ID = d.Name
	}
	if err := c.checkCheck(&d, true); err != nil {
		return err
	}
	return c.durable(c.registerCheck(d))
}

func (c *Catalog) registerCheck(d checks.Definition) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.ServiceID != "" && c.services[d.ServiceID] == nil {
		return 0, invalid("check %q: ServiceID %q is not a service of this agent; register the service first, or leave ServiceID out for a node check", d.ID, d.ServiceID)
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.saveCheck(d); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.setCheckLocked(newLocalCheck(d, c.checks[d.ID]))
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

// DeregisterCheck removes one of this agent's checks.
func (c *Catalog) DeregisterCheck(id string) error {
	return c.durable(c.deregisterCheck(id))
}

func (c *Catalog) deregisterCheck(id string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks[id] == nil {
		return 0, notFound("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.removeCheck(id); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.deleteCheckLocked(id)
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

// UpdateCheck records a check's result: the check runner's reports, and
// TTL updates without a runner. A new status is applied and spread at
// once; new output alone waits (Config.CheckUpdateInterval). Output
// beyond CheckBufSize is cut. Unknown checks are ErrNotFound.
func (c *Catalog) UpdateCheck(id, status, output string) error {
	if !ValidStatus(status) {
		return invalid("Invalid check status: %q; use passing, warning or critical", status)
	}
	output = truncateOutput(output)
	c.mu.Lock()
	defer c.mu.Unlock()
	lc := c.checks[id]
	if lc == nil {
		return notFound("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
	}
	if lc.status == status {
		if lc.output != output {
			lc.output = output
			c.outputIDs[id] = struct{}{}
			c.outputPending = true
			close(c.changed) // the publisher arms its output timer
			c.changed = make(chan struct{})
		}
		return nil
	}
	if err := c.bumpLocked(); err != nil {
		return err
	}
	lc.status, lc.output, lc.pubOutput = status, output, output
	delete(c.outputIDs, id)
	c.dirty.owner(lc.def.ServiceID)
	c.flushOutputLocked()
	c.commitLocked()
	return nil
}

// UpdateTTL is an application's report on a TTL check (PUT
// /v1/agent/check/pass|warn|fail|update/<id>). With a runner, it goes
// through the runner, which restarts the check's TTL; without one it is
// recorded as it is.
func (c *Catalog) UpdateTTL(id, status, output string) error {
	if !ValidStatus(status) {
		return invalid("Invalid check status: %q; use passing, warning or critical", status)
	}
	c.mu.Lock()
	lc := c.checks[id]
	var typ string
	if lc != nil {
		typ = lc.def.Type()
	}
	c.mu.Unlock()
	if lc == nil {
		return notFound("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
	}
	if typ != CheckTTL {
		return invalid("CheckID %q does not have associated TTL: it is a %s check, updated by its own runs; only TTL checks take pass, warn, fail and update", id, typeName(typ))
	}
	ref := c.runner.Load()
	if ref == nil {
		return c.UpdateCheck(id, status, truncateOutput(output))
	}
	// The runner learns of new checks asynchronously; make sure it knows
	// this one before reporting on it.
	c.syncRunner(ref.r)
	return ref.r.TTL(id, status, truncateOutput(output))
}

func typeName(t string) string {
	if t == "" {
		return "fixed-status"
	}
	return t
}

func truncateOutput(s string) string {
	if len(s) > CheckBufSize {
		return fmt.Sprintf("%s ... (captured %d of %d bytes)", s[:CheckBufSize], CheckBufSize, len(s))
	}
	return s
}

// flushOutputLocked publishes every check's latest output with the next
// commit.
func (c *Catalog) flushOutputLocked() {
	for id := range c.outputIDs {
		if lc := c.checks[id]; lc != nil && lc.pubOutput != lc.output {
			lc.pubOutput = lc.output
			c.dirty.owner(lc.def.ServiceID)
		}
	}
	clear(c.outputIDs)
	c.outputPending = false
}

// flushOutput spreads pending output-only changes (the publisher calls it
// after CheckUpdateInterval).
func (c *Catalog) flushOutput() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.outputPending {
		return nil
	}
	if err := c.bumpLocked(); err != nil {
		return err
	}
	c.flushOutputLocked()
	c.commitLocked()
	return nil
}

// LocalServices returns this agent's services, sorted by ID. The values
// are copies.
func (c *Catalog) LocalServices() []*Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Service, 0, len(c.services))
	for _, s := range c.services {
		out = append(out, s.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LocalService returns one of this agent's services, or nil.
func (c *Catalog) LocalService(id string) *Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.services[id]; s != nil {
		return s.clone()
	}
	return nil
}

// LocalChecks returns this agent's checks with their latest output,
// sorted by ID. The values are copies.
func (c *Catalog) LocalChecks() []*Check {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Check, 0, len(c.checks))
	for _, lc := range c.checks {
		out = append(out, c.checkRowLocked(lc, lc.output).clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CheckID < out[j].CheckID })
	return out
}

// LocalCheckDefinitions returns the definitions of this agent's checks,
// sorted by ID.
func (c *Catalog) LocalCheckDefinitions() []checks.Definition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]checks.Definition, 0, len(c.checks))
	for _, lc := range c.checks {
		out = append(out, cloneDefinition(lc.def))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ---- validation ----

// checkService validates a service and fills in its defaults.
func (c *Catalog) checkService(s *Service) error {
	if s.Name == "" {
		return invalid("Missing service name: give the service a \"Name\"")
	}
	if s.ID == "" {
		s.ID = s.Name
	}
	if s.Port < 0 || s.Port > 65535 {
		return invalid("Invalid service port %d for service %q: a port is 0-65535 (0: none)", s.Port, s.ID)
	}
	if s.Address != "" {
		if a, err := netip.ParseAddr(s.Address); err == nil && a.IsUnspecified() {
			return invalid("Invalid service address %q for service %q: it must be an address clients can reach; leave it empty to use the node's", s.Address, s.ID)
		}
	}
	for k, ta := range s.TaggedAddresses {
		if ta.Port < 0 || ta.Port > 65535 {
			return invalid("Invalid port %d in TaggedAddresses[%q] of service %q: a port is 0-65535", ta.Port, k, s.ID)
		}
	}
	switch w := s.Weights; {
	case w == (Weights{}):
		s.Weights = Weights{Passing: 1, Warning: 1}
	case w.Passing < 1:
		return invalid("Passing must be greater than 0: service %q has Weights.Passing=%d; use 1 or more", s.ID, w.Passing)
	case w.Warning < 0:
		return invalid("Warning must be 0 or more: service %q has Weights.Warning=%d", s.ID, w.Warning)
	}
	if err := checkMeta("service "+quote(s.ID), s.Meta); err != nil {
		return err
	}
	normalizeService(s)
	return nil
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func checkMeta(what string, meta map[string]string) error {
	if len(meta) > metaMaxPairs {
		return invalid("Invalid meta of %s: %d pairs, at most %d", what, len(meta), metaMaxPairs)
	}
	for k, v := range meta {
		switch {
		case k == "":
			return invalid("Invalid meta of %s: a key is empty", what)
		case len(k) > metaKeyMaxLen:
			return invalid("Invalid meta of %s: key %q is %d bytes, at most %d", what, k[:20]+"...", len(k), metaKeyMaxLen)
		case len(v) > metaValueMaxLen:
			return invalid("Invalid meta of %s: the value of %q is %d bytes, at most %d", what, k, len(v), metaValueMaxLen)
		case strings.HasPrefix(k, "consul-") && k != "consul-network-segment":
			return invalid("Invalid meta of %s: key %q uses the reserved prefix \"consul-\"", what, k)
		}
	}
	return nil
}

// checkCheck validates a check definition. agentAPI: registered through
// the agent API, where every check must say how it runs.
func (c *Catalog) checkCheck(d *checks.Definition, agentAPI bool) error {
	if d.ID == "" {
		return invalid("Missing check ID")
	}
	if d.Status != "" && !ValidStatus(string(d.Status)) {
		return invalid("Status for checks must 'passing', 'warning', 'critical': check %q has Status %q", d.ID, d.Status)
	}
	var types []string
	if d.TTL != 0 {
		types = append(types, "TTL")
	}
	if d.HTTP != "" {
		types = append(types, "HTTP")
	}
	if d.TCP != "" {
		types = append(types, "TCP")
	}
	if len(d.Args) > 0 {
		types = append(types, "Args")
	}
	if len(types) > 1 {
		return invalid("check %q has %s: give exactly one of TTL, HTTP, TCP and Args (ScriptArgs)", d.ID, strings.Join(types, " and "))
	}
	for name, v := range map[string]time.Duration{"TTL": d.TTL, "Interval": d.Interval, "Timeout": d.Timeout, "DeregisterCriticalServiceAfter": d.DeregisterCriticalServiceAfter} {
		if v < 0 {
			return invalid("check %q: %s=%v is negative; give a positive duration such as \"10s\"", d.ID, name, v)
		}
	}
	for name, v := range map[string]int{"SuccessBeforePassing": d.SuccessBeforePassing, "FailuresBeforeWarning": d.FailuresBeforeWarning, "FailuresBeforeCritical": d.FailuresBeforeCritical} {
		if v < 0 {
			return invalid("check %q: %s=%d is negative", d.ID, name, v)
		}
	}
	if d.Type() == "" {
		if agentAPI {
			return invalid("Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval: check %q has none of TTL, HTTP, TCP and ScriptArgs", d.ID)
		}
		return nil
	}
	if d.Type() == CheckScript && !c.cfg.EnableScriptChecks {
		return invalid("check %q: script checks are disabled on this agent; start it with -enable-script-checks to run ScriptArgs, or use an HTTP, TCP or TTL check", d.ID)
	}
	if c.cfg.ValidateCheck != nil {
		if err := c.cfg.ValidateCheck(*d); err != nil {
			return invalid("%v", err)
		}
		return nil
	}
	switch d.Type() {
	case CheckHTTP:
		u, err := url.Parse(d.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("check %q: HTTP=%q is not an http:// or https:// URL", d.ID, d.HTTP)
		}
	case CheckTCP:
		if _, _, err := net.SplitHostPort(d.TCP); err != nil {
			return invalid("check %q: TCP=%q is not host:port (%v)", d.ID, d.TCP, err)
		}
	case CheckTTL:
		if d.Interval != 0 {
			return invalid("check %q: TTL=%s and Interval=%s are both set; a TTL check is updated by the application: drop Interval", d.ID, d.TTL, d.Interval)
		}
	}
	if d.Type() != CheckTTL && d.Interval == 0 {
		return invalid("check %q: %s checks need an Interval, such as \"10s\"", d.ID, strings.ToUpper(d.Type()))
	}
	return nil
}

// ---- normalization: nil for empty, so equal states compare equal ----

func normalizeService(s *Service) {
	if len(s.Tags) == 0 {
		s.Tags = nil
	}
	if len(s.Meta) == 0 {
		s.Meta = nil
	}
	if len(s.TaggedAddresses) == 0 {
		s.TaggedAddresses = nil
	}
	if len(s.Ports) == 0 {
		s.Ports = nil
	}
	if len(s.Proxy) == 0 {
		s.Proxy = nil
	}
	if len(s.Connect) == 0 {
		s.Connect = nil
	}
}

func normalizeNode(n *Node) {
	if len(n.TaggedAddresses) == 0 {
		n.TaggedAddresses = nil
	}
	if len(n.Meta) == 0 {
		n.Meta = nil
	}
}

func normalizeCheck(c *Check) {
	if len(c.ServiceTags) == 0 {
		c.ServiceTags = nil
	}
	if len(c.Definition.Header) == 0 {
		c.Definition.Header = nil
	}
	if len(c.Definition.Args) == 0 {
		c.Definition.Args = nil
	}
}

func normalizeDef(d *checks.Definition) {
	if len(d.Header) == 0 {
		d.Header = nil
	}
	if len(d.Args) == 0 {
		d.Args = nil
	}
}

func equalDef(a, b checks.Definition) bool {
	normalizeDef(&a)
	normalizeDef(&b)
	return reflect.DeepEqual(a, b)
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Unmap().Is4()
}

func sortNodeStates(ns []nodeState) {
	sort.Slice(ns, func(i, j int) bool { return lower(ns[i].Node.Node) < lower(ns[j].Node.Node) })
	for _, n := range ns {
		sort.Slice(n.Services, func(i, j int) bool { return n.Services[i].ID < n.Services[j].ID })
		sort.Slice(n.Checks, func(i, j int) bool { return n.Checks[i].CheckID < n.Checks[j].CheckID })
	}
}
