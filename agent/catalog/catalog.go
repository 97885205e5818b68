package catalog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/blocking"
)

// Catalog is this agent's service catalog: its own services and checks,
// and the replicas of every other agent's. Safe for concurrent use.
type Catalog struct {
	cfg   Config
	log   *slog.Logger
	state *state
	store *store // nil without a data dir

	// This agent's own entries; everything under mu.
	mu       sync.Mutex
	version  uint64 // of the state last applied and published
	reserved uint64 // versions up to this are reserved in the data dir
	node     *Node
	services map[string]*Service      // by ID, as registered
	checks   map[string]*localCheck   // by check ID
	external map[string]*externalNode // by lower-case node name
	// txns are the /v1/txn intents whose catalog half is applied and
	// whose intent is still in the KV store (txnledger.go).
	txns map[string]bool
	// outputPending: a check's output changed without its status;
	// it goes out with the next version (see Config.CheckUpdateInterval).
	outputPending bool
	// changed closes on every change of the local entries, waking the
	// publisher and the check runner's sync (level-triggered: they
	// re-read everything).
	changed chan struct{}
	// ownRecord is the encoded state at recordVersion, for gossip and
	// push/pull; it is encoded when asked for (record), not on every
	// change. encodeCost is how long the last encoding took.
	ownRecord     []byte
	recordVersion uint64
	encodeCost    time.Duration
	// dirty is what changed since the last commit (see local_dirty.go);
	// byService indexes checks by service ID ("" for node checks).
	dirty     dirtySet
	byService map[string]map[string]struct{}
	// runnerDirty are the checks to compare with the runner's on its
	// next sync; runnerAll asks for a full comparison. Under mu.
	runnerDirty map[string]struct{}
	runnerAll   bool
	// outputIDs are the checks whose output changed without their status
	// (outputPending).
	outputIDs map[string]struct{}

	// The other agents' states, as received; see gossip.go.
	inbox   chan inMsg
	keysCh  chan struct{} // KeysChanged; buffered 1
	rmu     sync.Mutex
	remotes map[string]*remote
	// held are the latest records of origins whose key is not known
	// yet, by origin; only receiveLoop touches it.
	held map[string][]heldRecord

	blocking blocking.Tracker // the blocking queries in flight (Block)

	runner   atomic.Pointer[runnerRef]
	runnerMu sync.Mutex                   // serializes syncRunner
	running  map[string]checks.Definition // what the runner was given; under runnerMu
	ran      atomic.Bool
}

type runnerRef struct{ r Runner }

// localCheck is one of this agent's checks: its definition, its status,
// its latest output, and the output last published.
type localCheck struct {
	def       checks.Definition
	status    string
	output    string
	pubOutput string
	// condition: set by the agent from its own condition
	// (SetConditionCheck), never written to the data dir.
	condition bool
}

// externalNode is a node registered through this agent with
// /v1/catalog/register: its services and checks have fixed statuses.
type externalNode struct {
	Node     *Node
	Services map[string]*Service
	Checks   map[string]*Check
}

// reserveBlock is how many versions are reserved in the data dir at a
// time: one write per million changes.
const reserveBlock = 1 << 20

// New validates cfg, loads this agent's entries from the data dir and
// reserves a version above any it used before. It starts nothing; Run
// spreads the state and applies the other agents'.
func New(cfg Config) (*Catalog, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	c := &Catalog{
		cfg:      cfg,
		log:      cfg.Logger,
		state:    newState(now),
		services: map[string]*Service{},
		checks:   map[string]*localCheck{},
		external: map[string]*externalNode{},
		changed:  make(chan struct{}),
		inbox:    make(chan inMsg, inboxSize),
		keysCh:   make(chan struct{}, 1),
		held:     map[string][]heldRecord{},
		remotes:  map[string]*remote{},
		running:  map[string]checks.Definition{},

		byService:   map[string]map[string]struct{}{},
		runnerDirty: map[string]struct{}{},
		runnerAll:   true,
		outputIDs:   map[string]struct{}{},
	}
	c.node = &Node{
		ID:         cfg.NodeID,
		Node:       cfg.NodeName,
		Address:    cfg.Address,
		Datacenter: cfg.Datacenter,
		TaggedAddresses: map[string]string{
			"lan": cfg.Address, "wan": cfg.Address,
		},
		Meta: map[string]string{"consul-network-segment": ""},
	}
	maps.Copy(c.node.Meta, cfg.NodeMeta)
	if addr := cfg.Address; isIPv4(addr) {
		c.node.TaggedAddresses["lan_ipv4"], c.node.TaggedAddresses["wan_ipv4"] = addr, addr
	} else {
		c.node.TaggedAddresses["lan_ipv6"], c.node.TaggedAddresses["wan_ipv6"] = addr, addr
	}

	var reserved uint64
	if cfg.DataDir != "" {
		c.store = &store{dir: cfg.DataDir}
		loaded, migrated, err := c.store.load()
		if err != nil {
			return nil, err
		}
		if migrated {
			defer c.log.Info("moved the local services and checks into the catalog log", "log", c.store.logPath())
		}
		reserved = loaded.reserved
		c.txns = loaded.txns
		for _, s := range loaded.services {
			s.Node = cfg.NodeName
			c.services[s.ID] = s
		}
		for _, d := range loaded.checks {
			if d.ServiceID != "" && c.services[d.ServiceID] == nil {
				c.log.Warn("dropping a saved check of a service that is not registered any more", "check", d.ID, "service", d.ServiceID)
				continue
			}
			c.setCheckLocked(newLocalCheck(d, nil))
		}
		for _, n := range loaded.external {
			c.external[lower(n.Node.Node)] = n
		}
	}
	// The hybrid version: boot time in ms shifted left by 20 bits, never
	// below what an earlier run reserved.
	c.version = max(uint64(now.UnixMilli())<<20, reserved+1)
	if err := c.reserveLocked(c.version); err != nil {
		return nil, err
	}
	if c.store != nil {
		// A fresh log: what was read (the files of an earlier version
		// included), and nothing else.
		if err := c.store.compact(c.logLinesLocked()); err != nil {
			return nil, err
		}
	}
	c.commitAllLocked()
	if n := len(c.services); n > 0 {
		c.log.Info("restored local services and checks from the data dir", "services", n, "checks", len(c.checks), "external_nodes", len(c.external))
	}
	return c, nil
}

// reserveLocked makes sure versions up to v are reserved in the data dir.
func (c *Catalog) reserveLocked(v uint64) error {
	if v <= c.reserved {
		return nil
	}
	next := v + reserveBlock
	if c.store != nil {
		if err := c.store.saveReserved(next); err != nil {
			return err
		}
	}
	c.reserved = next
	return nil
}

// bumpLocked takes the next version for a local change.
func (c *Catalog) bumpLocked() error {
	if err := c.reserveLocked(c.version + 1); err != nil {
		return err
	}
	c.version++
	return nil
}

// commitAllLocked applies all the local entries at the current version
// to the read side and wakes the publisher.
func (c *Catalog) commitAllLocked() {
	wire := c.wireNodesLocked()
	res := c.state.apply(c.cfg.NodeName, withSerfHealth(wire, c.cfg.NodeName, StatusPassing))
	for _, n := range res.conflicts {
		// Not reached: registrations of another agent's node are refused.
		c.log.Warn("a node registered through this agent belongs to another agent; not shown", "node", n)
	}
	c.dirty = dirtySet{}
	close(c.changed)
	c.changed = make(chan struct{})
}

// commitLocked applies what changed in the local entries (c.dirty) at
// the current version to the read side and wakes the publisher, which
// encodes the state for gossip when it sends it (record). Its cost
// depends on what changed, not on how many entries there are.
func (c *Catalog) commitLocked() {
	res := c.state.applyDelta(c.cfg.NodeName, c.deltasLocked())
	for _, n := range res.conflicts {
		// Not reached: registrations of another agent's node are refused.
		c.log.Warn("a node registered through this agent belongs to another agent; not shown", "node", n)
	}
	c.dirty = dirtySet{}
	close(c.changed)
	c.changed = make(chan struct{})
}

// record returns this agent's state encoded for gossip, at its current
// version. The encoding (of every entry) runs outside mu, so
// registrations go on meanwhile; what it encodes is the snapshot taken
// under mu.
func (c *Catalog) record() (uint64, []byte) {
	c.mu.Lock()
	if c.recordVersion == c.version {
		defer c.mu.Unlock()
		return c.recordVersion, c.ownRecord
	}
	v, wire := c.version, c.wireNodesLocked()
	c.mu.Unlock()
	start := time.Now()
	rec := encodeRecord(c.cfg.NodeName, v, wire)
	if c.cfg.SigningKey != nil {
		rec = append(rec, ed25519.Sign(c.cfg.SigningKey, rec)...)
	}
	cost := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if v > c.recordVersion {
		c.recordVersion, c.ownRecord, c.encodeCost = v, rec, cost
	}
	return c.recordVersion, c.ownRecord
}

// wireNodesLocked is this agent's published state: its node with its
// services and checks, then the external nodes registered through it.
func (c *Catalog) wireNodesLocked() []nodeState {
	own := nodeState{Node: c.node}
	for _, s := range c.services {
		own.Services = append(own.Services, s)
	}
	if s := c.cfg.ServerService; s != nil && c.services[s.ID] == nil {
		own.Services = append(own.Services, s)
	}
	for _, lc := range c.checks {
		own.Checks = append(own.Checks, c.checkRowLocked(lc, lc.pubOutput))
	}
	out := []nodeState{own}
	for _, n := range c.external {
		ns := nodeState{Node: n.Node}
		for _, s := range n.Services {
			ns.Services = append(ns.Services, s)
		}
		for _, ch := range n.Checks {
			ns.Checks = append(ns.Checks, ch)
		}
		out = append(out, ns)
	}
	sortNodeStates(out)
	return out
}

// checkRowLocked is a local check as the catalog shows it.
func (c *Catalog) checkRowLocked(lc *localCheck, output string) *Check {
	d := lc.def
	chk := &Check{
		Node:       c.cfg.NodeName,
		CheckID:    d.ID,
		Name:       d.Name,
		Status:     lc.status,
		Notes:      d.Notes,
		Output:     output,
		ServiceID:  d.ServiceID,
		Type:       d.Type(),
		Definition: reportedDefinition(d),
	}
	if s := c.services[d.ServiceID]; s != nil {
		chk.ServiceName = s.Name
		chk.ServiceTags = s.Tags
	}
	return chk
}

func newLocalCheck(d checks.Definition, prev *localCheck) *localCheck {
	lc := &localCheck{def: d, status: string(d.Status), output: d.Output, pubOutput: d.Output}
	if lc.status == "" {
		lc.status = StatusCritical
	}
	// Re-registering a check of the same type keeps what it reported:
	// registrator and configuration tools re-register periodically.
	if prev != nil && prev.def.Type() == d.Type() && d.Type() != "" {
		lc.status, lc.output, lc.pubOutput = prev.status, prev.output, prev.pubOutput
	}
	return lc
}

// Run spreads this agent's state over g and applies the other agents'
// states that arrive through GossipHandler, shown or hidden by membership;
// it keeps r running exactly this agent's checks. g and r may be nil (a
// lone agent; no check runner). They are given here rather than in Config
// because each of them needs the catalog first (the gossip channel is
// registered with GossipHandler, the runner reports to UpdateCheck). Run
// blocks until ctx is done and returns nil then; it may be called once.
func (c *Catalog) Run(ctx context.Context, g Gossip, r Runner) error {
	if !c.ran.CompareAndSwap(false, true) {
		return errors.New("catalog: Run called twice; create a new Catalog")
	}
	if r != nil {
		c.runner.Store(&runnerRef{r})
		defer c.runner.Store(nil)
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return c.receiveLoop(ctx, g) })
	eg.Go(func() error { return c.publishLoop(ctx, g) })
	if r != nil {
		eg.Go(func() error { return c.runnerLoop(ctx, r) })
	}
	return eg.Wait()
}

// Close syncs and closes the file that keeps this agent's own state in
// the data dir; call it once Run has returned and the API no longer
// writes. A registration after Close opens the file again.
func (c *Catalog) Close() error {
	if c.store == nil {
		return nil
	}
	return c.store.close()
}

// Version is the version of this agent's published state.
func (c *Catalog) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// runnerLoop keeps the runner's checks equal to the local ones.
func (c *Catalog) runnerLoop(ctx context.Context, r Runner) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		c.syncRunner(r)
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// syncRunner gives r every local check that runs and takes away the ones
// that are gone or changed. A check r refuses goes critical with r's
// reason as its output.
func (c *Catalog) syncRunner(r Runner) {
	c.runnerMu.Lock()
	defer c.runnerMu.Unlock()
	c.mu.Lock()
	// Only the checks that changed since the last sync (all of them the
	// first time): a sync costs what changed, not what there is.
	ids := make([]string, 0, len(c.runnerDirty))
	if c.runnerAll {
		for id := range c.checks {
			ids = append(ids, id)
		}
		for id := range c.running {
			if c.checks[id] == nil {
				ids = append(ids, id)
			}
		}
	} else {
		for id := range c.runnerDirty {
			ids = append(ids, id)
		}
	}
	c.runnerAll = false
	clear(c.runnerDirty)
	want := map[string]checks.Definition{}
	for _, id := range ids {
		if lc := c.checks[id]; lc != nil && lc.def.Type() != "" {
			d := cloneDefinition(lc.def)
			d.Status = checks.Status(lc.status)
			want[id] = d
		}
	}
	c.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		d, running := c.running[id]
		w, ok := want[id]
		if running && (!ok || !sameRun(d, w)) {
			r.Remove(id)
			delete(c.running, id)
			running = false
		}
		if !ok || running {
			continue
		}
		if err := r.Add(w); err != nil {
			c.log.Warn("the check runner refused a check", "check", id, "err", err)
			_ = c.UpdateCheck(id, StatusCritical, fmt.Sprintf("cairn cannot run this check: %v", err))
			continue
		}
		c.running[id] = w
	}
}

// sameRun: two definitions run the same way (the status does not count).
func sameRun(a, b checks.Definition) bool {
	a.Status, b.Status = "", ""
	return equalDef(a, b)
}
