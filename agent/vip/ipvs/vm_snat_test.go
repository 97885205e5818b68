package ipvs

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestVMMasqueradeReturnPath is evidence for what this package does not
// do (see the package doc): IPVS NAT keeps the client's address, and a
// client on the node connects from the VIP itself, which a backend on
// another node holds too. One netfilter rule in a table of its own —
// masquerade what conntrack saw going to a VIP — makes the backends see
// the node's address instead, for clients on the node and behind it.
func TestVMMasqueradeReturnPath(t *testing.T) {
	needVM(t)
	vn := newVMNet(t, 21)
	bs := vn.backends(1, 8080)
	client, _ := vn.namespace()
	dp := newDP(t, Config{Interface: "cairn-snat"})
	s := svc("web", "10.221.0.1", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(s.VIP, 80)
	c, err := dial(to)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.221.0.1:") {
		t.Errorf("without masquerade, the backend saw a client on the node as %s, want the VIP", c.seenAs)
	}

	nft, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := nft.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "cairn-ipvs-snat"})
	ch := nft.AddChain(&nftables.Chain{
		Name: "postrouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	vip4 := s.VIP.As4()
	nft.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDST, Direction: 0}, // ct original ip daddr
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip4[:]},
		&expr.Masq{},
	}})
	if err := nft.Flush(); err != nil {
		t.Fatalf("add nftables masquerade: %v", err)
	}
	t.Cleanup(func() {
		nft.DelTable(tbl)
		nft.Flush()
	})

	c, err = dial(to)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.21.1.1:") {
		t.Errorf("with masquerade, the backend saw a client on the node as %s, want the node's 10.21.1.1", c.seenAs)
	}
	inNetns(t, client, func() {
		c, err = dial(to)
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.21.1.1:") {
		t.Errorf("with masquerade, the backend saw a client behind the node as %s, want the node's 10.21.1.1", c.seenAs)
	}
	t.Logf("with masquerade: the backend sees %s", c.seenAs)
}
