package agent

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/preparedquery"
	"github.com/cairn-dev/cairn/dns"
	"github.com/cairn-dev/cairn/kvtest"
)

// readOnly is an Authorizer that may read the services and nodes named.
type readOnly struct{ services, nodes map[string]bool }

func (a readOnly) Allowed(r acl.Resource, name string, want acl.Access) bool {
	if want != acl.Read {
		return false
	}
	switch r {
	case acl.Service:
		return a.services[name]
	case acl.Node:
		return a.nodes[name]
	}
	return false
}
func (a readOnly) AllowedUnder(r acl.Resource, name string, want acl.Access) bool {
	return a.Allowed(r, name, want)
}

// TestDNSAnswersTheDefaultTokensView: with ACLs on, DNS answers only the
// services (and nodes) the default token may read; the others are
// NXDOMAIN, as in Consul, and appear as soon as the view allows them.
func TestDNSAnswersTheDefaultTokensView(t *testing.T) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	cat, err := catalog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "secret"} {
		def := catalog.ServiceDefinition{Service: catalog.Service{ID: name, Name: name, Port: 80},
			Checks: []checks.Definition{{ID: name, TTL: time.Hour, Status: checks.Status(catalog.StatusPassing)}}}
		if err := cat.RegisterService(def, false); err != nil {
			t.Fatal(err)
		}
	}
	var view atomic.Pointer[readOnly]
	view.Store(&readOnly{services: map[string]bool{"web": true}, nodes: map[string]bool{"node-1": true}})
	d := newDNSCatalog(cat, nil, slog.New(slog.DiscardHandler))
	d.view = func(memdb.WatchSet) (acl.Authorizer, any) { v := view.Load(); return *v, v }

	pc, ln := dnsListeners(t)
	dcfg := dns.DefaultConfig()
	dcfg.AltDomain = "consul."
	started := make(chan struct{})
	dcfg.PacketConn, dcfg.Listener, dcfg.NotifyStarted = pc, ln, func() { close(started) }
	srv, err := dns.New(dcfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-started
	addr := pc.LocalAddr().String()

	for _, tc := range []struct {
		name  string
		rcode int
	}{
		{"web.service.consul", mdns.RcodeSuccess},
		{"tasks.web.cluster", mdns.RcodeSuccess},
		{"secret.service.consul", mdns.RcodeNameError},
		{"tasks.secret.cluster", mdns.RcodeNameError},
	} {
		r, err := dnsQuery(addr, tc.name, mdns.TypeA)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Rcode != tc.rcode || (tc.rcode == mdns.RcodeSuccess && len(r.Answer) == 0) {
			t.Errorf("%s A = %s with %d answers, want %s", tc.name, mdns.RcodeToString[r.Rcode], len(r.Answer), mdns.RcodeToString[tc.rcode])
		}
	}

	// A node the view may not read takes its instances with it.
	view.Store(&readOnly{services: map[string]bool{"web": true}, nodes: map[string]bool{}})
	if err := cat.RegisterService(catalog.ServiceDefinition{Service: catalog.Service{ID: "web-2", Name: "web", Port: 81}}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web.service.consul NXDOMAIN once node-1 is hidden", 10*time.Second, func() (bool, string) {
		r, err := dnsQuery(addr, "web.service.consul", mdns.TypeA)
		if err != nil {
			return false, err.Error()
		}
		return r.Rcode == mdns.RcodeNameError, mdns.RcodeToString[r.Rcode]
	})
}

// TestDNSPreparedQueriesAnswerTheDefaultTokensView: <query>.query.consul
// leaves out what the default token may not read, as the catalog names do.
func TestDNSPreparedQueriesAnswerTheDefaultTokensView(t *testing.T) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	cat, err := catalog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "secret"} {
		if err := cat.RegisterService(catalog.ServiceDefinition{Service: catalog.Service{ID: name, Name: name, Port: 80}}, false); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := preparedquery.New(preparedquery.Config{Store: kvtest.NewServer(t), Catalog: cat, NodeName: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"web", "secret"} {
		if _, err := reg.Create(ctx, preparedquery.Query{Name: "q-" + name, Service: preparedquery.ServiceQuery{Service: name}}); err != nil {
			t.Fatal(err)
		}
	}
	view := readOnly{services: map[string]bool{"web": true}, nodes: map[string]bool{"node-1": true}}
	q := dnsQueries{r: reg, view: func() acl.Authorizer { return view }}
	for name, want := range map[string]int{"q-web": 1, "q-secret": 0} {
		insts, _, _, err := q.Query(ctx, name, netip.Addr{})
		if err != nil || len(insts) != want {
			t.Errorf("Query(%s) = %d instances, %v; want %d", name, len(insts), err, want)
		}
	}
}

// dnsListeners binds UDP and TCP on one loopback port: a free UDP port's
// TCP twin may be taken by another test, so a few ports are tried.
func dnsListeners(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	var last error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
		last = err
	}
	t.Fatalf("no loopback port free for both UDP and TCP: %v", last)
	return nil, nil
}
