package dns_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/dns"
)

// catalog is a Catalog that never changes: it adds nothing to the watch
// set, so the server reads it once.
type catalog []dns.Service

func (c catalog) Snapshot(memdb.WatchSet) (uint64, []dns.Service, []dns.Node) {
	return 1, c, nil
}

func (c catalog) Changes(memdb.WatchSet, uint64) (dns.Delta, bool) {
	return dns.Delta{Index: 1}, true
}

// A Server answers from a Catalog; the agent passes an adapter of its
// catalog, here a fixed one.
func Example() {
	n1, n2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	cat := catalog{{
		Name: "web",
		VIP:  netip.MustParseAddr("10.10.0.5"),
		Instances: []dns.Instance{
			{Node: "n1", NodeAddr: n1, ServiceID: "web1", Port: 8080, Status: dns.StatusPassing},
			{Node: "n2", NodeAddr: n2, ServiceID: "web2", Port: 8080, Status: dns.StatusPassing},
		},
	}}
	cfg := dns.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	started := make(chan struct{})
	cfg.NotifyStarted = func() { close(started) }
	srv, err := dns.New(cfg, cat)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		cancel()
		fmt.Println(err)
		return
	}

	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"web.cluster.", mdns.TypeA}, {"tasks.web.cluster.", mdns.TypeA}, {"web.service.cluster.", mdns.TypeSRV}} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		r, err := mdns.Exchange(m, srv.UDPAddr().String())
		if err != nil {
			fmt.Println(err)
			break
		}
		for _, rr := range r.Answer {
			fmt.Println(rr)
		}
	}
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// web.cluster.	0	IN	A	10.10.0.5
	// tasks.web.cluster.	0	IN	A	10.0.0.1
	// tasks.web.cluster.	0	IN	A	10.0.0.2
	// web.service.cluster.	0	IN	SRV	1 1 8080 n1.node.dc1.cluster.
	// web.service.cluster.	0	IN	SRV	1 1 8080 n2.node.dc1.cluster.
	// stopped: <nil>
}
