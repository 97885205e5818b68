package ipvs

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// masq keeps the two nftables tables (ip and ip6, named
// cairn-ipvs-<interface>) that masquerade connections whose original
// destination is a VIP:
//
//	table ip cairn-ipvs-cairn0 {
//		set vips { type ipv4_addr; elements = { ... } }
//		chain postrouting { type nat hook postrouting priority srcnat;
//			ct original ip daddr @vips masquerade }
//	}
//
// IPVS NAT rewrites only the destination. Without this, a backend sees
// the client's own address: for a client on the node that is the VIP
// itself (the local route's source), which every node holds, and for a
// client in a container it is an address only this node routes. A
// backend on another node would then answer somewhere else. Swarm
// (iptables -m ipvs SNAT) and kube-proxy (mark, then MASQUERADE) do the
// same. Established connections keep their NAT binding in conntrack,
// so changing the tables does not disturb them.
type masq struct {
	conn   *nftables.Conn
	tables [2]*nftables.Table // ip, ip6
	sets   [2]*nftables.Set
}

func newMasq(iface string) (*masq, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	m := &masq{conn: c}
	for i, f := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		m.tables[i] = &nftables.Table{Family: f, Name: "cairn-ipvs-" + iface}
		kt := nftables.TypeIPAddr
		if i == 1 {
			kt = nftables.TypeIP6Addr
		}
		m.sets[i] = &nftables.Set{Table: m.tables[i], Name: "vips", KeyType: kt}
	}
	return m, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func elem(a netip.Addr) nftables.SetElement { return nftables.SetElement{Key: a.AsSlice()} }

// chunk bounds the set elements per transaction: one transaction is one
// netlink message batch, which must fit the socket's send buffer
// (net.core.wmem_default, 208 KiB; an IPv6 element takes about 40 bytes).
const chunk = 1000

// sync makes both tables exist with their chain and rule, and their sets
// hold exactly vips. It never deletes a table: elements still wanted stay
// in place throughout, so no new connection to a VIP that keeps existing
// goes unmasqueraded while a restarted agent adopts the state. Its cost
// is in proportion to the number of VIPs (it reads the sets back).
func (m *masq) sync(vips []netip.Addr) error {
	c := m.conn
	for i, t := range m.tables {
		c.AddTable(t)
		if err := c.AddSet(m.sets[i], nil); err != nil {
			return fmt.Errorf("masquerade table %s: %w", t.Name, err)
		}
		ch := c.AddChain(&nftables.Chain{
			Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		})
		c.FlushChain(ch) // the rule is replaced in the same transaction
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyDST, Direction: 0}, // ct original daddr
			&expr.Lookup{SourceRegister: 1, SetName: m.sets[i].Name, SetID: m.sets[i].ID},
			&expr.Masq{},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("program the nftables masquerade tables %s: %w (does the kernel have nf_tables with nat and masquerade? Config.NoMasquerade turns this off)", m.tables[0].Name, err)
	}
	want := make(map[netip.Addr]bool, len(vips))
	for _, a := range vips {
		want[a] = true
	}
	var add, del []netip.Addr
	have := make(map[netip.Addr]bool)
	for i := range m.sets {
		es, err := c.GetSetElements(m.sets[i])
		if err != nil {
			return fmt.Errorf("read the masquerade set of %s: %w", m.tables[i].Name, err)
		}
		for _, e := range es {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				have[a] = true
				if !want[a] {
					del = append(del, a)
				}
			}
		}
	}
	for _, a := range vips {
		if !have[a] {
			add = append(add, a)
		}
	}
	return m.update(add, del)
}

// update adds, then removes, set elements, in transactions of at most
// chunk elements.
func (m *masq) update(add, del []netip.Addr) error {
	for len(add) > 0 || len(del) > 0 {
		n := min(len(add), chunk)
		var ea, ed [2][]nftables.SetElement
		for _, a := range add[:n] {
			ea[family(a)] = append(ea[family(a)], elem(a))
		}
		add = add[n:]
		if n < chunk {
			k := min(len(del), chunk-n)
			for _, a := range del[:k] {
				ed[family(a)] = append(ed[family(a)], elem(a))
			}
			del = del[k:]
		}
		for i := range m.sets {
			if len(ea[i]) > 0 {
				if err := m.conn.SetAddElements(m.sets[i], ea[i]); err != nil {
					return err
				}
			}
			if len(ed[i]) > 0 {
				if err := m.conn.SetDeleteElements(m.sets[i], ed[i]); err != nil {
					return err
				}
			}
		}
		if err := m.conn.Flush(); err != nil {
			return fmt.Errorf("update the masquerade sets of %s: %w", m.tables[0].Name, err)
		}
	}
	return nil
}

// remove deletes both tables; missing ones are fine.
func (m *masq) remove() error {
	var errs []error
	for _, t := range m.tables {
		m.conn.DelTable(t)
		if err := m.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete nftables table %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *masq) close() { m.conn.CloseLasting() }
