package ipvs

import (
	"errors"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Draining: a removed backend is set to weight 0 (setVIP) and deleted
// here once IPVS counts no active connection on it or its deadline
// (Config.DrainTimeout) has passed. The kernel sends no event when a
// connection ends, so one goroutine owned by the Dataplane polls the
// draining backends' counters every Config.DrainPoll: it starts when
// something starts draining, exits when nothing drains any more, and
// Close stops it and waits for it. It takes the Dataplane's mutex, so it
// never runs while Update, Sync or Flush does.

// startDrainer starts the drain goroutine when something drains and it
// does not run. Called with d.mu held.
func (d *Dataplane) startDrainer() {
	if len(d.draining) == 0 || d.drainer != nil || d.closed {
		return
	}
	dr := &drainer{stop: make(chan struct{}), done: make(chan struct{})}
	d.drainer = dr
	go d.drain(dr)
}

// drain deletes draining backends once they have no active connection
// or their deadline has passed, polling every DrainPoll; it returns when
// nothing drains any more or on stop.
func (d *Dataplane) drain(dr *drainer) {
	defer close(dr.done)
	t := time.NewTicker(d.cfg.DrainPoll)
	defer t.Stop()
	for {
		select {
		case <-dr.stop:
			return
		case <-t.C:
		}
		d.mu.Lock()
		if d.drainer != dr {
			d.mu.Unlock()
			return
		}
		d.reap(time.Now())
		if len(d.draining) == 0 {
			d.drainer = nil
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// reap deletes the draining backends that are done. Called with d.mu held.
func (d *Dataplane) reap(now time.Time) {
	for k := range d.draining {
		v := d.vips[k.vip]
		if v == nil || v.services[k] == nil {
			delete(d.draining, k)
			continue
		}
		dests := v.services[k]
		kd, err := d.ipvs.GetDestinations(d.service(k))
		if err != nil {
			d.log.Warn("ipvs: cannot read connection counts of draining backends; will retry", "vip", k.String(), "err", err)
			continue
		}
		active := make(map[netip.AddrPort]int, len(kd))
		for _, x := range kd {
			if a, ok := netip.AddrFromSlice(x.Address); ok {
				if k.vip.Is4() {
					a = a.Unmap()
				}
				active[netip.AddrPortFrom(a, x.Port)] = x.ActiveConnections
			}
		}
		left := 0
		for b, ds := range dests {
			if ds.weight != 0 || ds.drainUntil.IsZero() {
				continue
			}
			n, present := active[b]
			if present && n > 0 && now.Before(ds.drainUntil) {
				left++
				continue
			}
			if present {
				err := d.ipvs.DelDestination(d.service(k), destination(k, b, 0))
				if err != nil && !errors.Is(err, unix.ENOENT) {
					d.log.Warn("ipvs: cannot delete drained backend; will retry", "vip", k.String(), "backend", b.String(), "err", err)
					left++
					continue
				}
			}
			delete(dests, b)
			d.log.Info("ipvs: deleted drained backend", "vip", k.String(), "backend", b.String(), "active_connections", n, "timed_out", n > 0)
		}
		if left == 0 {
			delete(d.draining, k)
		}
		if len(dests) == 0 {
			// Its last backend drained and none is desired (a desired
			// port with backends always has one of weight 1): remove
			// the service so that the port refuses with a reset.
			if err := d.delService(k); err != nil {
				d.log.Warn("ipvs: cannot delete service without backends; will retry", "vip", k.String(), "err", err)
				d.draining[k] = true
				continue
			}
			delete(v.services, k)
		}
	}
}
