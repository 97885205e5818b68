package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/dns"
)

// TestDNSCatalogSnapshot runs the adapter on a catalog of its own: the
// grouping, the addresses, the health, the index and the watch set.
func TestDNSCatalogSnapshot(t *testing.T) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	cat, err := catalog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := func(id, name, addr string, port int, checkStatus string) {
		t.Helper()
		def := catalog.ServiceDefinition{Service: catalog.Service{ID: id, Name: name, Address: addr, Port: port, Tags: []string{"v1"}}}
		if checkStatus != "" {
			def.Checks = []checks.Definition{{ID: id, TTL: time.Hour, Status: checks.Status(checkStatus)}}
		}
		if err := cat.RegisterService(def, false); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	reg("web-1", "web", "10.0.1.1", 80, catalog.StatusPassing)
	reg("web-2", "web", "", 81, catalog.StatusWarning)
	reg("db", "db", "", 5432, "")
	reg("ext", "ext", "db.example.com", 443, "")

	var logs bytes.Buffer
	d := newDNSCatalog(cat, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	ws := memdb.NewWatchSet()
	idx, services, nodes := d.Snapshot(ws)
	if idx == 0 {
		t.Errorf("first Snapshot index = 0, want > 0")
	}
	node := netip.MustParseAddr("10.0.0.1")
	want := []dns.Service{
		{Name: "db", Instances: []dns.Instance{
			{Node: "node-1", NodeAddr: node, ServiceID: "db", Port: 5432, Tags: []string{"v1"}, Status: dns.StatusPassing},
		}},
		{Name: "web", Instances: []dns.Instance{
			{Node: "node-1", NodeAddr: node, ServiceID: "web-1", Address: netip.MustParseAddr("10.0.1.1"), Port: 80, Tags: []string{"v1"}, Status: dns.StatusPassing},
			{Node: "node-1", NodeAddr: node, ServiceID: "web-2", Port: 81, Tags: []string{"v1"}, Status: dns.StatusWarning},
		}},
	}
	if diff := cmp.Diff(want, services, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Snapshot services mismatch (-want +got):\n%s", diff)
	}
	if want := []dns.Node{{Name: "node-1", Addr: node}}; !slices.Equal(nodes, want) {
		t.Errorf("Snapshot nodes = %v, want %v", nodes, want)
	}
	if n := strings.Count(logs.String(), "dns: instance not answered"); n != 1 || !strings.Contains(logs.String(), `address=db.example.com`) {
		t.Errorf("log after the first Snapshot = %q; want one line about ext's host name address", logs.String())
	}

	// Nothing changed: same index, and the host name is not logged again.
	if again, _, _ := d.Snapshot(memdb.NewWatchSet()); again != idx {
		t.Errorf("Snapshot without a change: index %d, want %d", again, idx)
	}
	if n := strings.Count(logs.String(), "dns: instance not answered"); n != 1 {
		t.Errorf("host name logged %d times after two Snapshots, want once", n)
	}

	// A check change fires the watch set and moves the index.
	if err := cat.UpdateTTL("web-1", catalog.StatusCritical, "down"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.WatchCtx(ctx); err != nil {
		t.Fatalf("watch set did not fire after a check changed: %v", err)
	}
	next, services, _ := d.Snapshot(memdb.NewWatchSet())
	if next == idx {
		t.Errorf("index after a check changed = %d, the same as before", next)
	}
	if got := services[1].Instances[0].Status; got != dns.StatusCritical {
		t.Errorf("web-1 status after its check failed = %s, want critical", got)
	}
}

// dnsQuery asks addr one question over UDP.
func dnsQuery(addr, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// records lists a section's records as sorted text without TTLs and
// owner names: "A 127.0.0.11", "SRV 8001 7f00000b.addr.dc1.consul.".
func records(rrs []mdns.RR) string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, "A "+r.A.String())
		case *mdns.AAAA:
			out = append(out, "AAAA "+r.AAAA.String())
		case *mdns.SRV:
			out = append(out, fmt.Sprintf("SRV %d %s", r.Port, r.Target))
		case *mdns.OPT:
		default:
			out = append(out, mdns.TypeToString[rr.Header().Rrtype])
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// TestDNSAcrossThreeAgents registers two instances on one agent and
// finds them through another agent's DNS server, in Docker Swarm's and
// Consul's forms; a failing check takes its instance out of the answers.
func TestDNSAcrossThreeAgents(t *testing.T) {
	agents := catalogCluster(t, 3, func(i int, c *Config) { c.Ports.DNS = 0 })
	a, c := agents[0], agents[2]
	for i, ip := range []string{"127.0.0.11", "127.0.0.12"} {
		id := fmt.Sprintf("web-%d", i+1)
		err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "web", Address: ip, Port: 8001 + i,
			Check: &api.AgentServiceCheck{CheckID: id, TTL: "1h", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatalf("register %s on %s: %v", id, a.Config().NodeName, err)
		}
	}
	dnsAddr := c.DNSAddr().String()

	tests := []struct {
		name, question string
		qtype          uint16
		answer, extra  string
	}{
		{"swarm service name", "web.cluster", mdns.TypeA, "A 127.0.0.11, A 127.0.0.12", ""},
		{"swarm tasks", "tasks.web.cluster", mdns.TypeA, "A 127.0.0.11, A 127.0.0.12", ""},
		{"consul SRV", "web.service.consul", mdns.TypeSRV,
			"SRV 8001 7f00000b.addr.dc1.consul., SRV 8002 7f00000c.addr.dc1.consul.", "A 127.0.0.11, A 127.0.0.12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Poll: the registration reaches c over gossip.
			eventually(t, fmt.Sprintf("%s %s on %s", tt.question, mdns.TypeToString[tt.qtype], c.Config().NodeName), 10*time.Second, func() (bool, string) {
				r, err := dnsQuery(dnsAddr, tt.question, tt.qtype)
				if err != nil {
					return false, err.Error()
				}
				got := fmt.Sprintf("answer [%s] extra [%s]", records(r.Answer), records(r.Extra))
				return got == fmt.Sprintf("answer [%s] extra [%s]", tt.answer, tt.extra), mdns.RcodeToString[r.Rcode] + " " + got
			})
		})
	}

	if err := a.client.Agent().FailTTL("web-1", "down"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"web.cluster", "tasks.web.cluster", "web.service.consul"} {
		eventually(t, q+" without the failing instance", 10*time.Second, func() (bool, string) {
			r, err := dnsQuery(dnsAddr, q, mdns.TypeA)
			if err != nil {
				return false, err.Error()
			}
			got := records(r.Answer)
			return got == "A 127.0.0.12", got
		})
	}
}

func TestDNSPortInUse(t *testing.T) {
	first := startAgent(t, func() Config { c := devConfig(); c.Ports.DNS = 0; return c }())
	port := first.DNSAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()

	cfg := devConfig()
	cfg.Ports.DNS = int(port)
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	want := fmt.Sprintf("listen for DNS on 127.0.0.1:%d: ", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "move it with -dns-port, or turn DNS off with -dns-port=-1") {
		t.Fatalf("Run with a busy DNS port = %v, want an error starting %q that says what to do", err, want)
	}
}
