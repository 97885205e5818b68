package registrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// state is what registrator believes it has registered.
type state struct {
	mu sync.Mutex
	// owned: service ID -> the registration as last written (or being
	// written). Set before Register is called, so the dangling sweep,
	// which holds mu while it deregisters, never removes a registration
	// a worker is making.
	owned map[string]*Service
	// byContainer: container ID -> its service IDs.
	byContainer map[string][]string
	// draining: containers sent a stopping signal (kill event) that have
	// not died or started since, nor kept running beyond drainGrace.
	draining map[string]*drain
	// keptNames: containers whose registrations -deregister on-success
	// keeps (exited non-zero) -> their names. After a registrator
	// restart only the registry knows those registrations; the sweep
	// recognises them by the name in their IDs.
	keptNames map[string]string
	// failures: containers whose last reconcile failed -> how many
	// times in a row (the retry backoff).
	failures map[string]int
	// seq counts completed registry writes; confirmed: service ID -> the
	// seq of its last successful Register. A full sync only believes the
	// registry lost a service confirmed before it listed the registry.
	seq       uint64
	confirmed map[string]uint64
}

func newState() *state {
	return &state{owned: map[string]*Service{}, byContainer: map[string][]string{}, draining: map[string]*drain{}, keptNames: map[string]string{}, failures: map[string]int{}, confirmed: map[string]uint64{}}
}

// Counters are what a Registrator has done, for tests and benchmarks.
type Counters struct {
	Registered, Deregistered, Refreshed, Failed uint64
}

// drain is a container's stopping signal.
type drain struct {
	since time.Time
	// recheck: a reconcile is scheduled for when the grace ends.
	recheck bool
}

// stopSlack is added to a container's stop timeout: at its end the
// engine sends SIGKILL (a kill event, which renews the drain), and die
// follows a moment later; without it the drain could end just before.
const stopSlack = 5 * time.Second

// drainGrace is how long a drain lasts while c keeps running: the stop
// it anticipates ends within c's stop timeout; docker stop -t is not
// visible, so without one, DrainGrace.
func (r *Registrator) drainGrace(c *Container) time.Duration {
	if t := c.Config.StopTimeout; t != nil && *t >= 0 {
		return time.Duration(*t)*time.Second + stopSlack
	}
	return r.cfg.DrainGrace
}

// stoppingSignals are the kill signals that mean "this container is
// going away": its instances are marked critical until it dies, or
// until it has outlived drainGrace (QUIT and INT do not stop everything:
// a JVM dumps its threads on QUIT).
var stoppingSignals = map[string]bool{"15": true, "SIGTERM": true, "TERM": true, "9": true, "SIGKILL": true, "KILL": true,
	"2": true, "SIGINT": true, "INT": true, "3": true, "SIGQUIT": true, "QUIT": true}

// reconcileActions are the events after which a container's
// registrations may change. Others (exec_*, attach, top, resize...) are
// frequent — a HEALTHCHECK runs an exec every interval — and change
// nothing.
func reconcileAction(a string) bool {
	switch a {
	case "create", "start", "restart", "die", "kill", "stop", "destroy", "pause", "unpause", "rename", "update", "oom",
		"network:connect", "network:disconnect":
		return true
	}
	return strings.HasPrefix(a, "health_status")
}

// Run keeps the registry in step with the engine until ctx is done; it
// returns nil on a clean stop, an error when the registry cannot be
// reached at start within -retry-attempts.
//
// Order of work: reach the registry; subscribe to events; list every
// container and reconcile each; then remove this host's registrations
// that no container accounts for (start-up sweep). Afterwards, each event
// queues its container; -resync N relists; a broken event stream is
// resubscribed with backoff and followed by a full resync.
func (r *Registrator) Run(ctx context.Context) error {
	if err := r.connectRegistry(ctx); err != nil {
		return err
	}
	m := r.model(ctx)
	q := newQueue()
	r.q = q
	g, gctx := errgroup.WithContext(ctx)
	stop := q.closeOnDone(gctx)
	defer stop()
	for range r.cfg.Workers {
		g.Go(func() error {
			for {
				id, flags, since, ok := q.nextSince()
				if !ok {
					return nil
				}
				r.handle(withQueuedAt(gctx, since), m, id, flags)
				q.done(id, flags)
			}
		})
	}
	sweeps := make(chan (<-chan struct{}), 1)
	syncs := make(chan struct{}, 1)
	g.Go(func() error { return r.sweeper(gctx, sweeps) })
	g.Go(func() error { return r.heartbeat(gctx, q) })
	g.Go(func() error { return r.syncer(gctx, q, syncs, sweeps) })
	g.Go(func() error { return r.watch(gctx, q, syncs) })
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// connectRegistry pings the registry, retrying -retry-attempts times.
func (r *Registrator) connectRegistry(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := r.reg.Ping(ctx)
		if err == nil {
			return nil
		}
		if r.cfg.RetryAttempts != -1 && attempt >= r.cfg.RetryAttempts {
			return fmt.Errorf("registry not reachable after %d attempt(s) %v apart: %w; check the registry URI, or raise -retry-attempts", attempt+1, r.cfg.RetryInterval, err)
		}
		r.log.Warn("registry not reachable, retrying", "attempt", attempt+1, "in", r.cfg.RetryInterval, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.RetryInterval):
		}
	}
}

// model builds the service model from the config. The hostname's address
// (what 0.0.0.0 bindings become) is resolved once, and only without -ip.
func (r *Registrator) model(ctx context.Context) *model {
	m := &model{hostname: r.cfg.Hostname, hostIP: r.cfg.HostIP, internal: r.cfg.Internal, explicit: r.cfg.Explicit,
		useIPFromLabel: r.cfg.UseIPFromLabel, tags: r.tags}
	if m.hostIP == "" {
		if addrs, err := net.DefaultResolver.LookupHost(ctx, r.cfg.Hostname); err == nil && len(addrs) > 0 {
			m.hostAddr = pickHostAddr(addrs)
		} else {
			r.log.Warn("cannot resolve this host's name; published ports on 0.0.0.0 are registered as 0.0.0.0, set -ip", "hostname", r.cfg.Hostname, "err", err)
		}
	}
	return m
}

// pickHostAddr chooses among the hostname's addresses: the first
// non-loopback IPv4 one, else the first non-loopback one, else the first
// (Debian maps the hostname to 127.0.1.1, useless to other hosts; set
// -ip then).
func pickHostAddr(addrs []string) string {
	var v6 string
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.IsLoopback() {
			continue
		}
		if ip.Is4() || ip.Is4In6() {
			return ip.Unmap().String()
		}
		if v6 == "" {
			v6 = a
		}
	}
	if v6 != "" {
		return v6
	}
	return addrs[0]
}

// watch owns the event subscription: subscribe, then ask syncer for a
// full sync; queue each event's container; resubscribe with backoff when
// the stream breaks. It does nothing slow between two events: the engine
// drops events for a subscriber that does not keep up.
func (r *Registrator) watch(ctx context.Context, q *queue, syncs chan<- struct{}) error {
	backoff := 100 * time.Millisecond
	for {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := r.engine.Events(sctx)
		if err != nil {
			cancel()
			r.log.Warn("docker events: cannot subscribe, retrying", "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		// Subscribed: everything that happens from now on is an event,
		// so a list from now on misses nothing.
		select {
		case syncs <- struct{}{}:
		default: // one is already pending
		}
		since := time.Now()
	events:
		for {
			select {
			case ev, ok := <-stream.C():
				if !ok {
					break events
				}
				backoff = 100 * time.Millisecond
				r.onEvent(q, ev)
			case <-ctx.Done():
				cancel()
				for range stream.C() { // wait for the stream's goroutine
				}
				return nil
			}
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("docker event stream ended; resubscribing, then a full resync", "err", stream.Err(), "after", time.Since(since).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// syncer runs the full syncs: when watch has (re)subscribed, every
// -resync, and again with backoff after a failed list. After the first
// one, and after each one under -cleanup, it asks for the sweep of
// dangling registrations.
func (r *Registrator) syncer(ctx context.Context, q *queue, syncs <-chan struct{}, sweeps chan (<-chan struct{})) error {
	var resync <-chan time.Time
	if r.cfg.Resync > 0 {
		t := time.NewTicker(r.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	var retry <-chan time.Time
	backoff := time.Second
	swept := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-syncs:
		case <-resync:
		case <-retry:
		}
		retry = nil
		done, err := r.fullSync(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("full sync: cannot list containers; retrying", "in", backoff, "err", err)
			retry = time.After(backoff)
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		if !swept || r.cfg.Cleanup {
			select { // a pending sweep request is replaced
			case <-sweeps:
			default:
			}
			sweeps <- done
			swept = true
		}
	}
}

// onEvent records what the event says that a re-inspect cannot (a
// stopping signal) and queues the container. It never blocks.
func (r *Registrator) onEvent(q *queue, ev Event) {
	if !reconcileAction(ev.Action) {
		return
	}
	switch ev.Action {
	case "kill":
		if stoppingSignals[strings.ToUpper(ev.Attrs["signal"])] {
			r.st.mu.Lock()
			r.st.draining[ev.ID] = &drain{since: time.Now()}
			r.st.mu.Unlock()
		}
	case "start", "restart", "unpause", "die", "destroy":
		r.st.mu.Lock()
		delete(r.st.draining, ev.ID)
		r.st.mu.Unlock()
	}
	q.add(ev.ID, workReconcile)
}

// fullSync queues every container the engine has and every container
// registrator has registered (gone ones get deregistered). The channel
// closes once each has been reconciled.
func (r *Registrator) fullSync(ctx context.Context, q *queue) (<-chan struct{}, error) {
	ids, err := r.engine.ContainerList(ctx)
	if err != nil {
		return nil, err
	}
	// Registrations the registry lost (an agent restarted without its
	// data, someone deregistered them) are registered again, as
	// upstream's resync does, but without rewriting the ones it has.
	r.st.mu.Lock()
	snap := r.st.seq
	r.st.mu.Unlock()
	have := map[string]bool{}
	listed, lerr := r.reg.Services(ctx)
	for _, s := range listed {
		have[s.ID] = true
	}
	r.st.mu.Lock()
	for id, sids := range r.st.byContainer {
		ids = append(ids, id)
		for _, sid := range sids {
			if at := r.st.confirmed[sid]; lerr == nil && at != 0 && at <= snap && !have[sid] {
				delete(r.st.owned, sid)
				delete(r.st.confirmed, sid)
			}
		}
	}
	r.st.mu.Unlock()
	if lerr != nil {
		r.log.Warn("full sync: cannot list the registry; registrations it lost are not repaired this time", "err", lerr)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	r.log.Info("full sync", "containers", len(ids))
	return q.addSync(ids), nil
}

// heartbeat queues, every -ttl-refresh, a refresh of each container with
// registrator-driven checks; the workers do it, in order with the
// container's other work.
func (r *Registrator) heartbeat(ctx context.Context, q *queue) error {
	t := time.NewTicker(r.cfg.TTLRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.st.mu.Lock()
		var ids []string
		for cid, sids := range r.st.byContainer {
			for _, sid := range sids {
				if s := r.st.owned[sid]; s != nil && s.Status != StatusNone {
					ids = append(ids, cid)
					break
				}
			}
		}
		r.st.mu.Unlock()
		for _, id := range ids {
			q.add(id, workHeartbeat)
		}
	}
}

// handle does one container's queued work.
func (r *Registrator) handle(ctx context.Context, m *model, id string, flags uint8) {
	if flags&workReconcile != 0 {
		err := r.reconcile(ctx, m, id)
		r.st.mu.Lock()
		if err == nil {
			delete(r.st.failures, id)
		} else {
			r.st.failures[id]++
		}
		n := r.st.failures[id]
		r.st.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			// Retry with backoff: 1s, 2s, 4s ... 1m, until it works or
			// the container is gone.
			delay := min(time.Second<<min(n-1, 6), time.Minute)
			r.log.Warn("reconcile failed; retrying", "container", short(id), "in", delay, "err", err)
			time.AfterFunc(delay, func() {
				if ctx.Err() == nil {
					r.q.add(id, workReconcile)
				}
			})
		}
		return // a reconcile writes every status it changes
	}
	if flags&workHeartbeat != 0 {
		r.st.mu.Lock()
		var ss []*Service
		for _, sid := range r.st.byContainer[id] {
			if s := r.st.owned[sid]; s != nil && s.Status != StatusNone {
				ss = append(ss, s)
			}
		}
		r.st.mu.Unlock()
		for _, s := range ss {
			if err := r.reg.Refresh(ctx, s); err != nil {
				// Perhaps the registry lost it (an agent restarted
				// without its data): register it again.
				r.count(func(c *Counters) { c.Failed++ })
				r.log.Warn("refresh failed; registering again", "service", s.ID, "err", err)
				r.forget(s)
				r.q.add(id, workReconcile)
				continue
			}
			r.count(func(c *Counters) { c.Refreshed++ })
		}
	}
}

// forget drops s from what registrator believes is registered, so the
// next reconcile of its container registers it again.
func (r *Registrator) forget(s *Service) {
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	if r.st.owned[s.ID] == s {
		delete(r.st.owned, s.ID)
		delete(r.st.confirmed, s.ID)
	}
}

// short is a container ID as docker ps shows it.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// signaledBit is set in an exit code when a signal ended the process.
const signaledBit = 128

// desired is the services container id should have now.
func (r *Registrator) desired(ctx context.Context, m *model, id string) (svcs []*Service, keep bool, err error) {
	c, err := r.engine.ContainerInspect(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// A restarting container has exited and waits out its restart
	// policy's delay; moby reports it running, with its ports released,
	// so registering it would give the host's address and the
	// container's port.
	if !c.State.Running || c.State.Restarting {
		// -deregister on-success keeps a failed container's services
		// (it may be restarted) until it is removed; a signal is not a
		// failure (upstream's shouldRemove).
		code := c.State.ExitCode
		keep = r.cfg.Deregister == "on-success" && code != 0 && code&signaledBit == 0
		if keep {
			r.st.mu.Lock()
			r.st.keptNames[id] = strings.TrimPrefix(c.Name, "/")
			r.st.mu.Unlock()
		}
		return nil, keep, nil
	}
	var in inputs
	if sid := c.Config.Labels[labelSwarmServiceID]; sid != "" {
		// Only managers can inspect services; elsewhere tasks are
		// registered with their container's own labels.
		if in.swarmLabels, err = r.engine.ServiceLabels(ctx, sid); err != nil && !errors.Is(err, ErrNotFound) {
			r.log.Debug("swarm service labels unavailable; using the task container's labels only", "service", sid, "err", err)
		}
	}
	if other, ok := strings.CutPrefix(c.HostConfig.NetworkMode, "container:"); ok {
		if oc, err := r.engine.ContainerInspect(ctx, other); err == nil {
			_, in.netContainerIP = containerNetwork(oc, nil)
		}
	}
	svcs, err = m.buildServices(c, in)
	if err != nil {
		return nil, false, err
	}
	status, note := StatusNone, ""
	switch c.State.Health {
	case "healthy":
		status, note = StatusPassing, "docker healthcheck: healthy"
	case "starting":
		status, note = StatusCritical, "docker healthcheck: starting"
	case "unhealthy":
		status, note = StatusCritical, "docker healthcheck: unhealthy"
	}
	if c.State.Paused {
		status, note = StatusCritical, "container is paused"
	}
	r.st.mu.Lock()
	if d := r.st.draining[id]; d != nil {
		if left := time.Until(d.since.Add(r.drainGrace(c))); left > 0 {
			status, note = StatusCritical, "container is stopping"
			if !d.recheck {
				d.recheck = true
				time.AfterFunc(left, func() {
					if ctx.Err() == nil {
						r.q.add(id, workReconcile)
					}
				})
			}
		} else {
			// Still running: the signal did not stop it.
			delete(r.st.draining, id)
			r.log.Info("still running after a stopping signal; no longer draining", "container", short(id), "after", r.drainGrace(c))
		}
	}
	r.st.mu.Unlock()
	for _, s := range svcs {
		s.Status, s.StatusNote = status, note
		if status != StatusNone {
			s.StatusTTL = r.cfg.TTL
		}
	}
	return svcs, false, nil
}

// reconcile makes the registry hold exactly the services container id
// should have: register new or changed ones, refresh changed statuses,
// deregister the rest.
func (r *Registrator) reconcile(ctx context.Context, m *model, id string) error {
	want, keep, err := r.desired(ctx, m, id)
	if err != nil {
		return err
	}
	if keep {
		return nil
	}
	var errs []error
	wantIDs := map[string]bool{}
	for _, s := range want {
		wantIDs[s.ID] = true
		r.st.mu.Lock()
		old := r.st.owned[s.ID]
		r.st.owned[s.ID] = s
		if !slices.Contains(r.st.byContainer[id], s.ID) {
			r.st.byContainer[id] = append(r.st.byContainer[id], s.ID)
		}
		r.st.mu.Unlock()
		switch {
		case old == nil || !sameRegistration(old, s):
			if err := r.reg.Register(ctx, s); err != nil {
				r.st.mu.Lock()
				if old == nil {
					delete(r.st.owned, s.ID)
				} else {
					r.st.owned[s.ID] = old
				}
				r.st.mu.Unlock()
				r.count(func(c *Counters) { c.Failed++ })
				errs = append(errs, fmt.Errorf("register %s: %w", s.ID, err))
				continue
			}
			r.st.mu.Lock()
			r.st.seq++
			r.st.confirmed[s.ID] = r.st.seq
			r.st.mu.Unlock()
			r.count(func(c *Counters) { c.Registered++ })
			if old != nil && old.Status != StatusNone && s.Status != StatusNone && old.Status != s.Status {
				// A registry may keep an existing check's status on
				// re-registration (cairn and Consul do): set it.
				if err := r.reg.Refresh(ctx, s); err != nil {
					r.forget(s)
					errs = append(errs, fmt.Errorf("set status of %s to %s: %w", s.ID, s.Status, err))
					continue
				}
			}
			r.log.Info("registered", "container", short(id), "service", s.ID, "name", s.Name, "address", s.Address, "port", s.Port, "status", string(s.Status))
		case old.Status != s.Status || old.StatusNote != s.StatusNote:
			if err := r.reg.Refresh(ctx, s); err != nil {
				r.st.mu.Lock()
				r.st.owned[s.ID] = old
				r.st.mu.Unlock()
				r.count(func(c *Counters) { c.Failed++ })
				errs = append(errs, fmt.Errorf("set status of %s to %s: %w", s.ID, s.Status, err))
				continue
			}
			r.count(func(c *Counters) { c.Refreshed++ })
			r.log.Info("status", "container", short(id), "service", s.ID, "status", string(s.Status), "note", s.StatusNote)
		}
	}
	r.st.mu.Lock()
	// From here the sweep treats registrations it has not adopted as
	// dangling; those it has are in byContainer, and deregistered below.
	delete(r.st.keptNames, id)
	var gone []*Service
	var kept []string
	for _, sid := range r.st.byContainer[id] {
		if wantIDs[sid] {
			kept = append(kept, sid)
		} else if s := r.st.owned[sid]; s != nil {
			gone = append(gone, s)
		}
	}
	r.st.mu.Unlock()
	for _, s := range gone {
		if err := r.reg.Deregister(ctx, s); err != nil {
			r.count(func(c *Counters) { c.Failed++ })
			errs = append(errs, fmt.Errorf("deregister %s: %w", s.ID, err))
			kept = append(kept, s.ID)
			continue
		}
		r.st.mu.Lock()
		if r.st.owned[s.ID] == s {
			delete(r.st.owned, s.ID)
			delete(r.st.confirmed, s.ID)
		}
		r.st.mu.Unlock()
		r.count(func(c *Counters) { c.Deregistered++ })
		r.log.Info("deregistered", "container", short(id), "service", s.ID)
	}
	r.st.mu.Lock()
	if len(kept) == 0 {
		delete(r.st.byContainer, id)
		if len(want) == 0 {
			delete(r.st.draining, id)
		}
	} else {
		r.st.byContainer[id] = kept
	}
	r.st.mu.Unlock()
	return errors.Join(errs...)
}

// sameRegistration reports whether a and b register the same thing,
// ignoring the status of registrator's own check (changed with Refresh)
// but not whether there is one.
func sameRegistration(a, b *Service) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Address == b.Address && a.Port == b.Port &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Meta, b.Meta) && sameCheck(a.Check, b.Check) &&
		(a.Status == StatusNone) == (b.Status == StatusNone) && a.StatusTTL == b.StatusTTL
}

func sameCheck(a, b *Check) bool {
	return reflect.DeepEqual(a, b)
}

// idPattern is upstream's service ID form hostname:container:port[:udp].
var idPattern = regexp.MustCompile(`^(.+?):([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$`)

// sweeper removes this host's registrations that no container accounts
// for, once the full sync it was asked after has reconciled every
// container. Only IDs of the form <Hostname>:container:port[:udp] are
// this registrator's; SERVICE_ID registrations are left alone.
func (r *Registrator) sweeper(ctx context.Context, reqs <-chan (<-chan struct{})) error {
	for {
		var done <-chan struct{}
		select {
		case <-ctx.Done():
			return nil
		case done = <-reqs:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-done:
		}
		if err := r.sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("sweep of dangling registrations failed; the next resync retries", "err", err)
		}
	}
}

func (r *Registrator) sweep(ctx context.Context) error {
	all, err := r.reg.Services(ctx)
	if err != nil {
		return fmt.Errorf("list registry services: %w", err)
	}
	// Holding mu: a worker cannot start registering an ID between the
	// check and the Deregister.
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	keptBy := map[string]string{} // container name -> ID
	for cid, name := range r.st.keptNames {
		keptBy[name] = cid
	}
	var errs []error
	for _, s := range all {
		mm := idPattern.FindStringSubmatch(s.ID)
		if mm == nil || mm[1] != r.cfg.Hostname || r.st.owned[s.ID] != nil {
			continue
		}
		if cid, ok := keptBy[mm[2]]; ok {
			// Kept by -deregister on-success, by an earlier
			// registrator run: this host's and still wanted. Adopted
			// as the registry has it, so that the container's start
			// rewrites it and its removal deregisters it.
			r.st.owned[s.ID] = s
			if !slices.Contains(r.st.byContainer[cid], s.ID) {
				r.st.byContainer[cid] = append(r.st.byContainer[cid], s.ID)
			}
			continue
		}
		if err := r.reg.Deregister(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("deregister dangling %s: %w", s.ID, err))
			continue
		}
		r.countLocked(func(c *Counters) { c.Deregistered++ })
		r.log.Info("deregistered dangling", "service", s.ID)
	}
	return errors.Join(errs...)
}

// Counters returns what this Registrator has done so far.
func (r *Registrator) Counters() Counters {
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	return r.counters
}

func (r *Registrator) count(f func(*Counters)) {
	r.st.mu.Lock()
	f(&r.counters)
	r.st.mu.Unlock()
}

func (r *Registrator) countLocked(f func(*Counters)) { f(&r.counters) }
