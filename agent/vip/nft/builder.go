package nft

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// builder queues one transaction on the connection, in the order the
// kernel needs: new chains before rules that jump to them, rules before
// map elements that go to their chain, and deletions of elements before
// deletions of the chains they went to.
type builder struct {
	d       *Dataplane
	conn    *nftables.Conn
	table   *nftables.Table
	changes int
	err     error // first error while queueing

	// Queued at commit, after every chain and rule.
	delServices, addServices map[mapKey]string
	delNoEp, addNoEp         []mapKey
	delSvcChains, delEpOther []string
}

func (d *Dataplane) newBuilder() *builder {
	b := &builder{d: d, conn: d.conn, table: d.table}
	b.reset()
	return b
}

func (b *builder) reset() {
	b.changes = 0
	b.err = nil
	b.delServices = map[mapKey]string{}
	b.addServices = map[mapKey]string{}
	b.delNoEp, b.addNoEp = nil, nil
	b.delSvcChains, b.delEpOther = nil, nil
}

func (b *builder) nextSetID() uint32 {
	b.d.setID++
	if b.d.setID == 0 {
		b.d.setID++
	}
	return b.d.setID
}

func (b *builder) anonVerdictMap() *nftables.Set {
	return &nftables.Set{
		Table: b.table, ID: b.nextSetID(), Name: "__map%d",
		Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict,
	}
}

// namedSet refers to one of the two maps, by name (an ID is needed only
// when the map is created in the same transaction, which goes by name too).
func (b *builder) namedSet(name string) *nftables.Set {
	return &nftables.Set{Table: b.table, Name: name, IsMap: true, Concatenation: true,
		KeyType: mapKeyType(), DataType: nftables.TypeVerdict}
}

func (b *builder) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.table}
}

func (b *builder) addChain(name string) {
	b.conn.AddChain(b.chain(name))
	b.changes++
}

func (b *builder) flushChain(name string) {
	b.conn.FlushChain(b.chain(name))
	b.changes++
}

func (b *builder) delChain(name string) {
	b.changes++
	if strings.HasPrefix(name, "svc-") {
		b.delSvcChains = append(b.delSvcChains, name)
	} else {
		b.delEpOther = append(b.delEpOther, name)
	}
}

func (b *builder) addRules(c *nftables.Chain, spec chainSpec) {
	for _, r := range spec.rules {
		exprs, err := r.build(b)
		if err != nil {
			if b.err == nil {
				b.err = fmt.Errorf("build rule %q in chain %s: %w", r.comment, c.Name, err)
			}
			return
		}
		b.conn.AddRule(&nftables.Rule{
			Table: b.table, Chain: c, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment),
		})
		b.changes++
	}
}

// ensureBase queues what the fixed skeleton lacks or has wrong: the table,
// both maps, the fixed chains and their rules.
func (b *builder) ensureBase(k *kernelState) {
	if !k.exists {
		b.conn.AddTable(b.table)
		b.changes++
	}
	for _, name := range []string{mapServices, mapNoEndpoints} {
		if k.sets[name] {
			continue
		}
		s := b.namedSet(name)
		s.ID = b.nextSetID()
		if err := b.conn.AddSet(s, nil); err != nil && b.err == nil {
			b.err = fmt.Errorf("add map %s: %w", name, err)
		}
		b.changes++
	}
	for _, bc := range baseChains(b.d.cfg.Mark) {
		fp, exists := k.baseFps[bc.name]
		if exists && fp == bc.spec.fingerprint() {
			continue
		}
		c := &nftables.Chain{Name: bc.name, Table: b.table, Type: bc.typ, Hooknum: bc.hook, Priority: bc.priority}
		if exists {
			b.conn.FlushChain(c)
		} else {
			b.conn.AddChain(c)
		}
		b.changes++
		b.addRules(c, bc.spec)
	}
}

// diffVIP queues the changes from old to want for one VIP.
func (b *builder) diffVIP(old, want *vipState) {
	names := make([]string, 0, len(want.chains))
	for name := range want.chains {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := old.fps[name]; !ok {
			b.addChain(name)
		}
	}
	for _, name := range names {
		oldFp, ok := old.fps[name]
		if ok && oldFp == want.fps[name] {
			continue
		}
		if ok {
			b.flushChain(name)
		}
		b.addRules(b.chain(name), want.chains[name])
	}
	for k, c := range old.services {
		if want.services[k] != c {
			b.delServices[k] = c
			b.changes++
		}
	}
	for k, c := range want.services {
		if old.services[k] != c {
			b.addServices[k] = c
			b.changes++
		}
	}
	for k := range old.noEndpoints {
		if !want.noEndpoints[k] {
			b.delNoEp = append(b.delNoEp, k)
			b.changes++
		}
	}
	for k := range want.noEndpoints {
		if !old.noEndpoints[k] {
			b.addNoEp = append(b.addNoEp, k)
			b.changes++
		}
	}
	var gone []string
	for name := range old.fps {
		if _, ok := want.fps[name]; !ok {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		b.delChain(name)
	}
}

func sortedKeys[V any](m map[mapKey]V) []mapKey {
	keys := make([]mapKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b mapKey) int { return strings.Compare(string(a[:]), string(b[:])) })
	return keys
}

func (b *builder) elements(keys []mapKey, chain func(mapKey) string) []nftables.SetElement {
	elems := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		elems[i] = nftables.SetElement{Key: append([]byte(nil), k[:]...)}
		if c := chain(k); c != "" {
			elems[i].VerdictData = verdictGoto(c)
		}
	}
	return elems
}

// commit queues the element and deletion phases and sends the
// transaction. Nothing queued is a no-op.
func (b *builder) commit() error {
	defer b.reset()
	svcSet, noEpSet := b.namedSet(mapServices), b.namedSet(mapNoEndpoints)
	queue := func(op func(*nftables.Set, []nftables.SetElement) error, s *nftables.Set, elems []nftables.SetElement) {
		if len(elems) == 0 {
			return
		}
		if err := op(s, elems); err != nil && b.err == nil {
			b.err = fmt.Errorf("queue elements of %s: %w", s.Name, err)
		}
	}
	queue(b.conn.SetDeleteElements, svcSet, b.elements(sortedKeys(b.delServices), func(k mapKey) string { return b.delServices[k] }))
	queue(b.conn.SetDeleteElements, noEpSet, b.elements(sortKeys(b.delNoEp), func(mapKey) string { return chainReject }))
	queue(b.conn.SetAddElements, svcSet, b.elements(sortedKeys(b.addServices), func(k mapKey) string { return b.addServices[k] }))
	queue(b.conn.SetAddElements, noEpSet, b.elements(sortKeys(b.addNoEp), func(mapKey) string { return chainReject }))
	for _, name := range append(b.delSvcChains, b.delEpOther...) {
		b.conn.DelChain(b.chain(name))
	}
	if b.err != nil {
		// Drop what was queued: the connection must not carry half a
		// transaction into the next Flush.
		return b.discard()
	}
	if b.changes == 0 {
		return nil
	}
	n := b.changes
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("netlink transaction of %d changes: %w", n, err)
	}
	return nil
}

// discard empties the connection's queue without sending it. The
// library has no "abort", so a fresh connection replaces the old one.
func (b *builder) discard() error {
	err := b.err
	_ = b.conn.CloseLasting()
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if b.d.nsFile != nil {
		opts = append(opts, nftables.WithNetNSFd(int(b.d.nsFile.Fd())))
	}
	conn, cerr := nftables.New(opts...)
	if cerr != nil {
		return fmt.Errorf("%w (and reopening netlink failed: %v)", err, cerr)
	}
	b.d.conn = conn
	b.conn = conn
	return err
}

func verdictGoto(chain string) *expr.Verdict {
	return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
}

func sortKeys(keys []mapKey) []mapKey {
	slices.SortFunc(keys, func(a, b mapKey) int { return strings.Compare(string(a[:]), string(b[:])) })
	return keys
}

// ruleComments dumps every rule of the table in one netlink dump and
// returns, per chain, the rules' comments joined by newlines: the same
// fingerprint chainSpec.fingerprint computes. (The library dumps one
// chain at a time; with 10k VIPs that is 100k round trips.)
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
	_ = bigBuffers(nl)
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
