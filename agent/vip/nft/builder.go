package nft

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// builder collects one transaction and queues it on the connection in
// the order the kernel needs: the skeleton and new balance chains first,
// then map element deletions, then additions (a changed element is a
// deletion and an addition), then chain deletions.
type builder struct {
	d       *Dataplane
	changes int
	// full: also reconsider every balance chain the kernel holds, not
	// only those whose use changed (Sync).
	full bool

	delCounts, addCounts     map[mapKey]uint32
	delBackends, addBackends map[beKey]netip.AddrPort
	delNoEp, addNoEp         map[mapKey]bool
	kDelta                   map[uint32]int // change of each balance class's use
	strays                   []string       // chains to delete that are nobody's
	// rules: a chain was added or refilled, so the first transaction
	// starts a rule generation that packets already in a hook do not see.
	rules bool
	err   error
}

func (d *Dataplane) newBuilder() *builder {
	b := &builder{d: d}
	b.reset()
	return b
}

func (b *builder) reset() {
	b.changes = 0
	b.err = nil
	b.delCounts, b.addCounts = map[mapKey]uint32{}, map[mapKey]uint32{}
	b.delBackends, b.addBackends = map[beKey]netip.AddrPort{}, map[beKey]netip.AddrPort{}
	b.delNoEp, b.addNoEp = map[mapKey]bool{}, map[mapKey]bool{}
	b.kDelta = map[uint32]int{}
	b.strays = nil
	b.rules = false
}

func (b *builder) nextSetID() uint32 {
	b.d.setID++
	if b.d.setID == 0 {
		b.d.setID++
	}
	return b.d.setID
}

// set returns one of the three named sets, as AddSet and the element
// calls need it. The backend index is typed "mark" (a 4-byte integer in
// host byte order, as numgen writes it): the nft command needs a
// fixed-size type in a concatenation and aborts on "integer".
func (b *builder) set(name string) *nftables.Set {
	t := b.d.table
	svcKey := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	if strings.HasPrefix(name, mapBackends+"-") {
		return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark),
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}
	}
	switch name {
	case mapServices:
		return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true, KeyType: svcKey, DataType: nftables.TypeVerdict}
	case mapNoEndpoints:
		return &nftables.Set{Table: t, Name: name, Concatenation: true, KeyType: svcKey}
	}
	panic("nft: unknown set " + name)
}

// setNames lists the named sets, in the order they are made.
func setNames() []string {
	names := []string{mapServices, mapNoEndpoints}
	for i := range backendShards {
		names = append(names, backendsMap(i))
	}
	return names
}

func (b *builder) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.d.table}
}

func (b *builder) addRules(c *nftables.Chain, spec chainSpec) {
	for _, r := range spec.rules {
		b.d.conn.AddRule(&nftables.Rule{
			Table: b.d.table, Chain: c, Exprs: r.exprs(b),
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment),
		})
		b.changes++
	}
}

// writeChain makes chain c hold spec: added when absent, flushed and
// refilled when its fingerprint differs, left alone otherwise.
func (b *builder) writeChain(c *nftables.Chain, spec chainSpec, fp string, exists bool) {
	if exists && fp == spec.fingerprint() {
		return
	}
	if exists {
		b.d.conn.FlushChain(c)
	} else {
		b.d.conn.AddChain(c)
	}
	b.changes++
	b.rules = true
	b.addRules(c, spec)
}

// ensureBase queues, right away, what the fixed skeleton lacks or has
// wrong: the table, the four sets, the fixed chains and their rules.
func (b *builder) ensureBase(k *kernelState) {
	if !k.exists {
		b.d.conn.AddTable(b.d.table)
		b.changes++
	}
	for _, name := range setNames() {
		if k.sets[name] {
			continue
		}
		s := b.set(name)
		s.ID = b.nextSetID()
		if err := b.d.conn.AddSet(s, nil); err != nil && b.err == nil {
			b.err = fmt.Errorf("add set %s: %w", name, err)
		}
		b.changes++
	}
	for _, bc := range baseChains(b.d.cfg.Mark) {
		fp, exists := k.baseFps[bc.name]
		c := &nftables.Chain{Name: bc.name, Table: b.d.table, Type: bc.typ, Hooknum: bc.hook, Priority: bc.priority}
		b.writeChain(c, bc.spec, fp, exists)
	}
	b.strays = append(b.strays, k.strays...)
	b.changes += len(k.strays)
}

// diffVIP collects the element changes from old to want for one VIP.
func (b *builder) diffVIP(old, want *vipState) {
	for k, n := range old.counts {
		if m, ok := want.counts[k]; !ok || m != n {
			b.delCounts[k] = n
			b.kDelta[classOf(n, shardOf(k.vip()))]--
			b.changes++
		}
	}
	for k, n := range want.counts {
		if m, ok := old.counts[k]; !ok || m != n {
			b.addCounts[k] = n
			b.kDelta[classOf(n, shardOf(k.vip()))]++
			b.changes++
		}
	}
	for k, be := range old.backends {
		if w, ok := want.backends[k]; !ok || w != be {
			b.delBackends[k] = be
			b.changes++
		}
	}
	for k, be := range want.backends {
		if o, ok := old.backends[k]; !ok || o != be {
			b.addBackends[k] = be
			b.changes++
		}
	}
	for k := range old.noEndpoints {
		if !want.noEndpoints[k] {
			b.delNoEp[k] = true
			b.changes++
		}
	}
	for k := range want.noEndpoints {
		if !old.noEndpoints[k] {
			b.addNoEp[k] = true
			b.changes++
		}
	}
}

// kPlan is what commit does to the balance chains.
type kPlan struct {
	refs      map[uint32]int // new use counts of the balance classes considered
	delChains []uint32
}

// planCounts queues balance chains that are newly needed (or damaged)
// and returns which become unused.
func (b *builder) planCounts() kPlan {
	d := b.d
	consider := map[uint32]bool{}
	for k := range b.kDelta {
		consider[k] = true
	}
	if b.full {
		for k := range d.kRefs {
			consider[k] = true
		}
		for k := range d.kChains {
			consider[k] = true
		}
	}
	p := kPlan{refs: map[uint32]int{}}
	for _, k := range slices.Sorted(maps.Keys(consider)) {
		ref := d.kRefs[k] + b.kDelta[k]
		p.refs[k] = ref
		fp, hasChain := d.kChains[k]
		if ref > 0 {
			b.writeChain(b.chain(balanceChainName(k)), balanceSpec(k, d.cfg.Mark), fp, hasChain)
		} else if hasChain {
			p.delChains = append(p.delChains, k)
			b.changes++
		}
	}
	return p
}

// elemBatch bounds the elements of one netlink message: the element
// list is one attribute, whose length is 16 bits.
const elemBatch = 256

func (b *builder) queueElems(op func(*nftables.Set, []nftables.SetElement) error, name string, elems []nftables.SetElement) {
	s := b.set(name)
	for len(elems) > 0 {
		n := min(len(elems), elemBatch)
		if err := op(s, elems[:n]); err != nil && b.err == nil {
			b.err = fmt.Errorf("queue elements of %s: %w", name, err)
		}
		elems = elems[n:]
	}
}

func sortedKeys[V any](m map[mapKey]V) []mapKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b mapKey) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

func sortedBeKeys(m map[beKey]netip.AddrPort) []beKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b beKey) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

func countElems(m map[mapKey]uint32) []nftables.SetElement {
	var out []nftables.SetElement
	for _, k := range sortedKeys(m) {
		out = append(out, nftables.SetElement{Key: slices.Clone(k[:]),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: balanceChainName(classOf(m[k], shardOf(k.vip())))}})
	}
	return out
}

// backendElems returns the elements of each service-backends shard.
func backendElems(m map[beKey]netip.AddrPort) [backendShards][]nftables.SetElement {
	var out [backendShards][]nftables.SetElement
	for _, k := range sortedBeKeys(m) {
		s := shardOf(mapKey(k[:12]).vip())
		out[s] = append(out[s], nftables.SetElement{Key: slices.Clone(k[:]), Val: backendValue(m[k])})
	}
	return out
}

func keyElems(m map[mapKey]bool) []nftables.SetElement {
	var out []nftables.SetElement
	for _, k := range sortedKeys(m) {
		out = append(out, nftables.SetElement{Key: slices.Clone(k[:])})
	}
	return out
}

// commit queues and sends everything collected and returns how many
// changes it sent. On success it records the balance chains' new state;
// the caller records the VIPs'.
func (b *builder) commit() (int, error) {
	defer b.reset()
	d := b.d
	p := b.planCounts()
	c := d.conn
	n := b.changes
	if b.err != nil {
		return 0, b.discard()
	}
	if n == 0 {
		return 0, nil
	}
	// Three transactions, so that no packet can meet a chain or a
	// backend that is not there in its generation. The kernel walks a
	// chain's rules in the generation the packet entered the hook with
	// but looks set elements up in the current one; a commit that both
	// adds balance-N-S and points a service-ips element at it lets a
	// packet that entered before the commit jump into a chain with no
	// rules yet (no DNAT: its connection goes to the VIP itself and
	// times out), and one that removes backend N-1 while the element
	// moves from balance-N-S lets a packet still in balance-N-S miss.
	// So: 1. the skeleton, the chains and the backends that are new,
	// 2. the service-ips and no-endpoint elements, and backends
	// replaced in place, 3. what nothing points at any more.
	// A packet can still be in a hook when the next transaction
	// commits (a preempted virtual CPU holds it there), so commit waits
	// out an RCU grace period (waitGrace) after a transaction that the
	// next one relies on: 1 when it changed rules, 2 when 3 deletes.
	// TestSystemGenerationRace measures it: datagrams sent to a VIP
	// while its backend count changes leave without DNAT with one
	// transaction (74 in eight 5 s runs, 0 to 21 a run); with three
	// and no wait, 1 leaked in one of many CI runs; with the waits,
	// none in 11 runs, 8 of them beside three busy loops (nor any
	// without updates).
	added, replaced := map[beKey]netip.AddrPort{}, map[beKey]netip.AddrPort{}
	for k, be := range b.addBackends {
		if _, ok := b.delBackends[k]; ok {
			replaced[k] = be
		} else {
			added[k] = be
		}
	}
	deleted, replacedOld := map[beKey]netip.AddrPort{}, map[beKey]netip.AddrPort{}
	for k, be := range b.delBackends {
		if _, ok := b.addBackends[k]; ok {
			replacedOld[k] = be
		} else {
			deleted[k] = be
		}
	}
	flush := func(phase string) error {
		if b.err != nil {
			return b.discard()
		}
		if d.oneTransaction && phase != lastPhase {
			return nil // all in the last one
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("netlink transaction of %d changes (%s): %w", n, phase, err)
		}
		return nil
	}
	for shard, elems := range backendElems(added) {
		b.queueElems(c.SetAddElements, backendsMap(shard), elems)
	}
	if err := flush("new chains and backends"); err != nil {
		return 0, err
	}
	if b.rules && !d.oneTransaction {
		waitGrace()
	}
	b.queueElems(c.SetDeleteElements, mapServices, countElems(b.delCounts))
	for shard, elems := range backendElems(replacedOld) {
		b.queueElems(c.SetDeleteElements, backendsMap(shard), elems)
	}
	b.queueElems(c.SetDeleteElements, mapNoEndpoints, keyElems(b.delNoEp))
	b.queueElems(c.SetAddElements, mapServices, countElems(b.addCounts))
	for shard, elems := range backendElems(replaced) {
		b.queueElems(c.SetAddElements, backendsMap(shard), elems)
	}
	b.queueElems(c.SetAddElements, mapNoEndpoints, keyElems(b.addNoEp))
	if err := flush("service elements"); err != nil {
		return 0, err
	}
	if (len(deleted) > 0 || len(p.delChains) > 0 || len(b.strays) > 0) && !d.oneTransaction {
		waitGrace()
	}
	for shard, elems := range backendElems(deleted) {
		b.queueElems(c.SetDeleteElements, backendsMap(shard), elems)
	}
	for _, k := range p.delChains {
		c.DelChain(b.chain(balanceChainName(k)))
	}
	for _, name := range b.strays {
		c.DelChain(b.chain(name))
	}
	if err := flush(lastPhase); err != nil {
		return 0, err
	}
	for k, ref := range p.refs {
		if ref > 0 {
			d.kRefs[k] = ref
			d.kChains[k] = balanceSpec(k, d.cfg.Mark).fingerprint()
		} else {
			delete(d.kRefs, k)
			delete(d.kChains, k)
		}
	}
	return n, nil
}

// lastPhase is the last of commit's transactions.
const lastPhase = "unused backends and chains"

// discard empties the connection's queue without sending it: the
// library has no abort, so a fresh connection replaces the old one.
func (b *builder) discard() error {
	err := b.err
	if cerr := b.d.reopen(); cerr != nil {
		return fmt.Errorf("%w (and reopening netlink failed: %v)", err, cerr)
	}
	return err
}

// ruleComments dumps every rule of the table in one netlink dump and
// returns, per chain, the rules' comments joined by newlines: the same
// fingerprint chainSpec.fingerprint computes.
func (d *Dataplane) ruleComments() (map[string]string, error) {
	cfg := &netlink.Config{}
	if d.nsFile != nil {
		cfg.NetNS = int(d.nsFile.Fd())
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial netlink: %w", err)
	}
	defer nl.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(d.cfg.Table + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := nl.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("dump rules: %w", err)
	}
	lists := map[string][]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("decode rule: %w", err)
		}
		var table, chain, comment string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			case unix.NFTA_RULE_CHAIN:
				chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				comment, _ = userdata.GetString(ad.Bytes(), userdata.TypeComment)
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode rule: %w", err)
		}
		if table == d.cfg.Table {
			lists[chain] = append(lists[chain], comment)
		}
	}
	fps := make(map[string]string, len(lists))
	for c, l := range lists {
		fps[c] = strings.Join(l, "\n")
	}
	return fps, nil
}
