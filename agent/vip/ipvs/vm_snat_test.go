package ipvs

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/google/nftables"
)

// TestVMMasquerade: IPVS NAT keeps the client's address, and a client
// on the node connects from the VIP itself, which a backend on another
// node holds too. The data plane's nftables tables masquerade
// connections to VIPs, so backends see the node's address, for clients
// on the node and behind it; with NoMasquerade they see the VIP.
func TestVMMasquerade(t *testing.T) {
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
	if !strings.HasPrefix(c.seenAs, "10.21.1.1:") {
		t.Errorf("the backend saw a client on the node as %s, want the node's 10.21.1.1", c.seenAs)
	}
	inNetns(t, client, func() { c, err = dial(to) })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.21.1.1:") {
		t.Errorf("the backend saw a client behind the node as %s, want the node's 10.21.1.1", c.seenAs)
	}
	// A VIP added by Update is masqueraded too.
	s2 := svc("web2", "10.221.0.2", 80, addrs(bs)...)
	if err := dp.Update(t.Context(), []vip.Service{s2}, nil); err != nil {
		t.Fatal(err)
	}
	if c, err = dial(netip.AddrPortFrom(s2.VIP, 80)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.21.1.1:") {
		t.Errorf("the backend saw a client of a VIP added by Update as %s, want the node's 10.21.1.1", c.seenAs)
	}

	// Without masquerade the backend sees the VIP.
	plain := newDP(t, Config{Interface: "cairn-nosnat", NoMasquerade: true})
	s3 := svc("web3", "10.221.0.3", 80, addrs(bs)...)
	if err := plain.Sync(t.Context(), []vip.Service{s3}); err != nil {
		t.Fatal(err)
	}
	if c, err = dial(netip.AddrPortFrom(s3.VIP, 80)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.HasPrefix(c.seenAs, "10.221.0.3:") {
		t.Errorf("with NoMasquerade, the backend saw a client on the node as %s, want the VIP", c.seenAs)
	}
	if nftTableExists(t, "cairn-ipvs-cairn-nosnat") {
		t.Errorf("NoMasquerade made an nftables table")
	}
}

func nftTableExists(t testing.TB, name string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if x.Name == name {
			return true
		}
	}
	return false
}
