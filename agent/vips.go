package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/agent/vip/ipvs"
	"github.com/cairn-dev/cairn/agent/vip/nft"
	"github.com/hashicorp/go-memdb"
)

// vipCacheFile keeps the last VIP allocations read, in the data dir.
const vipCacheFile = "vip-allocations.json"

// The -vip-dataplane values.
const (
	DataplaneAuto     = "auto"
	DataplaneIPVS     = "ipvs"
	DataplaneNFTables = "nftables"
	DataplaneNone     = "none"
)

// validScheduler reports whether s is an IPVS scheduler -vip-scheduler
// accepts (the kernel's names, as ipvsadm -s takes them).
func validScheduler(s string) bool {
	switch s {
	case "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos":
		return true
	}
	return false
}

// DataplaneOptions is what a data plane constructor gets from the agent.
type DataplaneOptions struct {
	// Scheduler is -vip-scheduler (IPVS; "rr" by default).
	Scheduler string
	Logger    *slog.Logger
}

// DataplaneFactory opens one kernel data plane. It fails when the
// kernel cannot run it here (no IPVS, no permission), saying so.
type DataplaneFactory func(DataplaneOptions) (vip.Dataplane, error)

// dataplanes are the kernel data planes built into this cairn, by their
// -vip-dataplane name; auto tries ipvs, then nftables. Tests replace the
// map through Agent.dataplanes, so that they never touch the host.
func dataplanes() map[string]DataplaneFactory {
	return map[string]DataplaneFactory{
		DataplaneIPVS: func(o DataplaneOptions) (vip.Dataplane, error) {
			// New probes the kernel first: moby/ipvs itself does not
			// fail without IPVS.
			return ipvs.New(ipvs.Config{Scheduler: o.Scheduler, Logger: o.Logger})
		},
		DataplaneNFTables: func(o DataplaneOptions) (vip.Dataplane, error) {
			return nft.New(nft.Config{Logger: o.Logger})
		},
	}
}

// openDataplane opens the data plane -vip-dataplane names; nil means
// none (DNS and the HTTP tagged address only). auto takes ipvs when it
// opens (its probe finds IPVS in the kernel), else nftables, and says which in the log; when none does, it
// runs without one rather than failing the agent.
func openDataplane(name string, built map[string]DataplaneFactory, o DataplaneOptions) (vip.Dataplane, error) {
	log := o.Logger
	switch name {
	case DataplaneNone:
		return nil, nil
	case DataplaneAuto, "":
		for _, n := range []string{DataplaneIPVS, DataplaneNFTables} {
			f, ok := built[n]
			if !ok {
				continue
			}
			dp, err := f(o)
			if err == nil {
				log.Info("vip: data plane chosen by -vip-dataplane=auto", "dataplane", n)
				return dp, nil
			}
			log.Info("vip: data plane unusable on this host", "dataplane", n, "err", err)
		}
		log.Warn("vip: no kernel data plane usable (-vip-dataplane=auto): VIPs are answered in DNS and HTTP but this host does not balance them",
			"built_in", strings.Join(slices.Sorted(maps.Keys(built)), ","))
		return nil, nil
	}
	f, ok := built[name]
	if !ok {
		return nil, fmt.Errorf("-vip-dataplane=%s is not built into this cairn (built in: %s); use auto or none",
			name, strings.Join(append(slices.Sorted(maps.Keys(built)), DataplaneNone), ", "))
	}
	dp, err := f(o)
	if err != nil {
		return nil, fmt.Errorf("-vip-dataplane=%s: %w; use -vip-dataplane=auto to fall back to what this host supports", name, err)
	}
	return dp, nil
}

// flushDataplanes removes the rules every built-in data plane left
// (-vip-dataplane none: "remove cairn's rules"). A data plane that
// cannot open here has nothing to remove.
func flushDataplanes(ctx context.Context, built map[string]DataplaneFactory, o DataplaneOptions) {
	for _, name := range slices.Sorted(maps.Keys(built)) {
		dp, err := built[name](o)
		if err != nil {
			continue
		}
		if err := dp.Flush(ctx); err != nil {
			o.Logger.Warn("vip: could not remove the rules of an earlier run", "dataplane", name, "err", err)
		}
		dp.Close()
	}
}

// vipCatalog adds each service's VIP to the catalog and health answers
// of the HTTP API, as the tagged address Consul uses for its virtual
// IPs: "consul-virtual": {"Address": VIP, "Port": target port}.
//
// The answer's index stays the catalog's: the VIP part touches a
// service in the catalog (Catalog.Touch) when its VIP or ports change,
// which moves that index, so a blocking query wakes when only the VIP
// appears or changes.
type vipCatalog struct {
	*catalog.Catalog
	vips *vip.VIPs
}

func (c vipCatalog) ServiceNodes(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance) {
	idx, out := c.Catalog.ServiceNodes(ws, name, f)
	return idx, c.tag(ws, name, out)
}

func (c vipCatalog) ServiceHealth(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance) {
	idx, out := c.Catalog.ServiceHealth(ws, name, f)
	return idx, c.tag(ws, name, out)
}

// tag returns insts with the VIP tagged address on copies of their
// services (the catalog's own are shared and never modified).
func (c vipCatalog) tag(ws memdb.WatchSet, name string, insts []catalog.Instance) []catalog.Instance {
	if len(insts) == 0 {
		return insts
	}
	ap, ok := c.vips.Virtual(ws, name)
	if !ok {
		return insts
	}
	tagged := catalog.ServiceAddress{Address: ap.Addr().String(), Port: int(ap.Port())}
	out := make([]catalog.Instance, len(insts))
	for i, in := range insts {
		s := *in.Service
		s.TaggedAddresses = maps.Clone(s.TaggedAddresses)
		if s.TaggedAddresses == nil {
			s.TaggedAddresses = map[string]catalog.ServiceAddress{}
		}
		s.TaggedAddresses[vip.TaggedAddressKey] = tagged
		in.Service = &s
		out[i] = in
	}
	return out
}

// validateVIP checks the -vip-* settings.
func (c Config) validateVIP() error {
	if c.VIPCIDR != "" {
		if _, err := vip.ParseCIDR(c.VIPCIDR); err != nil {
			return err
		}
	}
	switch c.VIPDataplane {
	case "", DataplaneNone:
	case DataplaneAuto, DataplaneIPVS, DataplaneNFTables:
		if c.VIPCIDR == "" {
			return fmt.Errorf("-vip-dataplane=%s needs -vip-cidr: without a VIP range there are no VIPs to program; add -vip-cidr (e.g. 10.200.0.0/16) or drop -vip-dataplane", c.VIPDataplane)
		}
	default:
		return fmt.Errorf("-vip-dataplane=%q is not one of auto, ipvs, nftables, none", c.VIPDataplane)
	}
	if c.VIPScheduler != "" && !validScheduler(c.VIPScheduler) {
		return fmt.Errorf("-vip-scheduler=%q is not an IPVS scheduler; use rr (the default), wrr, lc, wlc, sh, mh, ... (see ipvsadm(8))", c.VIPScheduler)
	}
	if c.VIPGrace < 0 {
		return fmt.Errorf("vip_grace %v is negative; drop it for the default %v", c.VIPGrace, vip.DefaultGrace)
	}
	return nil
}

// vipPart builds the VIP part when -vip-cidr is set: the allocation
// table (every agent), the allocator (servers) and the reconciler (with
// a data plane). Without -vip-cidr there are no VIPs; -vip-dataplane
// none then still removes the rules an earlier run left.
//
// A leave that was asked for (cairn leave, /v1/agent/leave) removes
// this host's VIP rules; a stop by signal keeps them, even when
// leave_on_terminate makes it leave the cluster, because restarts and
// upgrades stop the agent that way and must not break connections: the
// next run adopts the rules.
func (w *wiring) vipPart() (part, bool, error) {
	cfg := w.cfg
	opts := DataplaneOptions{Scheduler: cfg.VIPScheduler, Logger: w.log}
	built := w.agent.dataplanes
	if cfg.VIPDataplane == DataplaneNone {
		flushDataplanes(context.Background(), built, opts)
	}
	if cfg.VIPCIDR == "" {
		return part{}, false, nil
	}
	cidr, err := vip.ParseCIDR(cfg.VIPCIDR)
	if err != nil {
		return part{}, false, err
	}
	dp, err := openDataplane(cfg.VIPDataplane, built, opts)
	if err != nil {
		return part{}, false, err
	}
	if dp != nil {
		w.onClose(dp.Close)
	}
	var leader vip.Leader
	if w.store != nil {
		leader = w.store
	}
	vc := vip.Config{
		CIDR:  cidr,
		Grace: cfg.VIPGrace,
		Store: w.routerFor().Internal(), Leader: leader, Catalog: w.cat, Dataplane: w.tel.dataplane(dp), Logger: w.log,
		// DNS answers VIPs from here until the first read of the store.
		CachePath: filepath.Join(w.dataDir, vipCacheFile),
		// A VIP that appears or changes wakes blocking queries on its service.
		Touch: w.cat.Touch,
	}
	v, err := vip.New(vc)
	if err != nil {
		return part{}, false, err
	}
	w.vips = v
	agentStop := w.agent.stopCause
	return part{"vip", func(ctx context.Context) error {
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- v.Run(runCtx) }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
		}
		if errors.Is(agentStop(), errLeaveRequested) {
			lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := v.Leave(lctx); err != nil {
				w.log.Warn("vip: could not remove this host's VIP rules while leaving", "err", err)
			}
			lcancel()
		}
		cancel()
		return <-done
	}}, true, nil
}

// httpCatalog is the catalog as the HTTP API reads it: with the
// consul-virtual tagged address when there are VIPs.
func (w *wiring) httpCatalog() httpapi.Catalog {
	if w.vips == nil {
		return w.cat
	}
	return vipCatalog{Catalog: w.cat, vips: w.vips}
}

// selfStats adds the "vip" section to /v1/agent/self's Stats when there
// are VIPs: the range, the data plane, the allocations and, on the
// leader, exhausted services with the error.
func (w *wiring) selfStats() map[string]map[string]string {
	out := map[string]map[string]string{}
	if w.vips != nil {
		out["vip"] = w.vips.Stats()
	}
	if d := w.diskStats(); d != nil {
		out["disk"] = d
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
