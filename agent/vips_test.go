package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/agent/vip"
)

// stubDataplane is a kernel data plane that only has a name.
type stubDataplane struct{ name string }

func (d stubDataplane) Name() string                                              { return d.name }
func (d stubDataplane) Sync(context.Context, []vip.Service) error                 { return nil }
func (d stubDataplane) Update(context.Context, []vip.Service, []netip.Addr) error { return nil }
func (d stubDataplane) Flush(context.Context) error                               { return nil }
func (d stubDataplane) Close() error                                              { return nil }

func TestOpenDataplane(t *testing.T) {
	works := func(name string) DataplaneFactory {
		return func(DataplaneOptions) (vip.Dataplane, error) { return stubDataplane{name}, nil }
	}
	fails := func(DataplaneOptions) (vip.Dataplane, error) {
		return nil, errors.New("the kernel has no IPVS (generic netlink family IPVS not found)")
	}
	tests := []struct {
		name  string
		flag  string
		built map[string]DataplaneFactory
		want  string // the data plane's name, "none" for nil
		err   string
	}{
		{"none", "none", map[string]DataplaneFactory{"ipvs": works("ipvs")}, "none", ""},
		{"auto prefers ipvs", "auto", map[string]DataplaneFactory{"ipvs": works("ipvs"), "nftables": works("nftables")}, "ipvs", ""},
		{"auto without ipvs in the kernel", "auto", map[string]DataplaneFactory{"ipvs": fails, "nftables": works("nftables")}, "nftables", ""},
		{"auto with nothing built in", "auto", map[string]DataplaneFactory{}, "none", ""},
		{"unset is auto", "", map[string]DataplaneFactory{"nftables": works("nftables")}, "nftables", ""},
		{"explicit", "nftables", map[string]DataplaneFactory{"ipvs": works("ipvs"), "nftables": works("nftables")}, "nftables", ""},
		{"explicit and unusable", "ipvs", map[string]DataplaneFactory{"ipvs": fails}, "", "-vip-dataplane=ipvs: the kernel has no IPVS (generic netlink family IPVS not found); use -vip-dataplane=auto to fall back to what this host supports"},
		{"not built in", "ipvs", map[string]DataplaneFactory{}, "", "-vip-dataplane=ipvs is not built into this cairn (built in: none); use auto or none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp, err := openDataplane(tt.flag, tt.built, DataplaneOptions{Scheduler: "rr", Logger: slog.New(slog.DiscardHandler)})
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("openDataplane(%q) = %v, want error %q", tt.flag, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("openDataplane(%q) = %v", tt.flag, err)
			}
			got := "none"
			if dp != nil {
				got = dp.Name()
			}
			if got != tt.want {
				t.Errorf("openDataplane(%q) = %s, want %s", tt.flag, got, tt.want)
			}
		})
	}
}

// memDataplane keeps the state a kernel would have, and what it was
// asked last, for agent tests (which must never touch the host).
type memDataplane struct {
	mu      sync.Mutex
	state   map[netip.Addr]vip.Service
	flushed bool
}

func (d *memDataplane) Name() string { return "nftables" }
func (d *memDataplane) Sync(_ context.Context, desired []vip.Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = map[netip.Addr]vip.Service{}
	for _, s := range desired {
		d.state[s.VIP] = s
	}
	return nil
}
func (d *memDataplane) Update(_ context.Context, set []vip.Service, del []netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range del {
		delete(d.state, a)
	}
	for _, s := range set {
		d.state[s.VIP] = s
	}
	return nil
}
func (d *memDataplane) Flush(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state, d.flushed = nil, true
	return nil
}
func (d *memDataplane) Close() error { return nil }

// String is the state as "web 10.200.0.1 tcp/80 -> a:p,b:p; ...".
func (d *memDataplane) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, a := range slices.SortedFunc(maps.Keys(d.state), netip.Addr.Compare) {
		s := d.state[a]
		line := s.Name + " " + a.String()
		for _, p := range s.Ports {
			var bs []string
			for _, b := range p.Backends {
				bs = append(bs, b.String())
			}
			line += fmt.Sprintf(" %s/%d -> %s", p.Proto, p.Port, strings.Join(bs, ","))
		}
		out = append(out, line)
	}
	return strings.Join(out, "; ")
}

// TestVIPAgent runs a -dev agent with -vip-cidr and a data plane that
// keeps its state in memory: a service gets a VIP, which DNS answers for
// web.cluster, the health API carries as the consul-virtual tagged
// address, /v1/agent/self reports, and the data plane balances over the
// instances' own ports; dnsrr opts out; a leave removes the rules.
func TestVIPAgent(t *testing.T) {
	cfg := devConfig()
	cfg.Ports.DNS = 0
	cfg.VIPCIDR = "10.200.0.0/24"
	dp := &memDataplane{}
	r := startAgentWith(t, cfg, func(a *Agent) { a.dataplanes = inMemory(dp) })
	a := r.Agent
	waitLeader(t, r.client)

	for i, ip := range []string{"127.0.0.11", "127.0.0.12"} {
		id := fmt.Sprintf("web-%d", i+1)
		err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "web", Address: ip, Port: 32768 + i, Meta: map[string]string{"vip_port": "80"},
			Check: &api.AgentServiceCheck{CheckID: id, TTL: "1h", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "db", Name: "db", Address: "127.0.0.13", Port: 5432, Meta: map[string]string{"endpoint_mode": "dnsrr"},
	})
	if err != nil {
		t.Fatalf("register db: %v", err)
	}

	eventually(t, "the data plane balances web's VIP", 10*time.Second, func() (bool, string) {
		got := dp.String()
		return got == "web 10.200.0.1 tcp/80 -> 127.0.0.11:32768,127.0.0.12:32769", got
	})
	eventually(t, "the health API carries the VIP", 10*time.Second, func() (bool, string) {
		entries, _, err := r.client.Health().Service("web", "", true, nil)
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, e := range entries {
			v := e.Service.TaggedAddresses["consul-virtual"]
			got = append(got, fmt.Sprintf("%s:%d", v.Address, v.Port))
		}
		return slices.Equal(got, []string{"10.200.0.1:80", "10.200.0.1:80"}), fmt.Sprint(got)
	})
	svcs, _, err := r.client.Catalog().Service("db", "", nil)
	if err != nil || len(svcs) != 1 {
		t.Fatalf("catalog service db = %v, %v", svcs, err)
	}
	if v, ok := svcs[0].ServiceTaggedAddresses["consul-virtual"]; ok {
		t.Errorf("db (endpoint_mode=dnsrr) has a consul-virtual tagged address: %+v", v)
	}
	for _, tt := range []struct{ q, want string }{
		{"web.cluster", "A 10.200.0.1"},
		{"tasks.web.cluster", "A 127.0.0.11, A 127.0.0.12"},
		{"db.cluster", "A 127.0.0.13"},
	} {
		eventually(t, "DNS "+tt.q, 10*time.Second, func() (bool, string) {
			m, err := dnsQuery(a.DNSAddr().String(), tt.q, mdns.TypeA)
			if err != nil {
				return false, err.Error()
			}
			got := records(m.Answer)
			return got == tt.want, got
		})
	}
	self, err := r.client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := self["Stats"]["vip"].(map[string]any)
	if stats["range"] != "10.200.0.0/24" || stats["dataplane"] != "nftables" || stats["allocations"] != "1" || stats["allocating"] != "true" {
		t.Errorf("/v1/agent/self Stats.vip = %v, want range 10.200.0.0/24, dataplane nftables, 1 allocation, allocating", stats)
	}

	// A requested leave removes this host's VIP rules.
	a.Leave()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop within 30s of Leave")
	}
	if r.err != nil {
		t.Errorf("Run = %v", r.err)
	}
	if !dp.flushed {
		t.Errorf("a requested leave did not flush the data plane; it holds %s", dp)
	}
}

func TestVIPConfig(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *Config)
		err  string
	}{
		{"none", func(c *Config) {}, ""},
		{"cidr", func(c *Config) { c.VIPCIDR = "10.200.0.0/16" }, ""},
		{"cidr and dataplane", func(c *Config) { c.VIPCIDR = "10.200.0.0/16"; c.VIPDataplane = "nftables" }, ""},
		{"none without cidr removes rules", func(c *Config) { c.VIPDataplane = "none" }, ""},
		{"bad cidr", func(c *Config) { c.VIPCIDR = "10.200.0.0" }, `-vip-cidr="10.200.0.0" is not a CIDR range; write e.g. 10.200.0.0/16`},
		{"dataplane without cidr", func(c *Config) { c.VIPDataplane = "ipvs" },
			"-vip-dataplane=ipvs needs -vip-cidr: without a VIP range there are no VIPs to program; add -vip-cidr (e.g. 10.200.0.0/16) or drop -vip-dataplane"},
		{"unknown dataplane", func(c *Config) { c.VIPCIDR = "10.200.0.0/16"; c.VIPDataplane = "ebpf" }, `-vip-dataplane="ebpf" is not one of auto, ipvs, nftables, none`},
		{"unknown scheduler", func(c *Config) { c.VIPScheduler = "random" },
			`-vip-scheduler="random" is not an IPVS scheduler; use rr (the default), wrr, lc, wlc, sh, mh, ... (see ipvsadm(8))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := devConfig()
			tt.set(&c)
			err := c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.err {
				t.Errorf("Validate() = %q, want %q", got, tt.err)
			}
		})
	}
}

func TestVIPConfigFile(t *testing.T) {
	path := t.TempDir() + "/vip.hcl"
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("vip_cidr = \"10.200.0.0/16\"\nvip_dataplane = \"nftables\"\nvip_scheduler = \"wrr\"\nvip_grace = \"30m\"\n")
	c := DefaultConfig()
	if err := LoadConfigFile(&c, path); err != nil {
		t.Fatal(err)
	}
	if c.VIPCIDR != "10.200.0.0/16" || c.VIPDataplane != "nftables" || c.VIPScheduler != "wrr" || c.VIPGrace != 30*time.Minute {
		t.Errorf("after the file: VIPCIDR %q, VIPDataplane %q, VIPScheduler %q, VIPGrace %v", c.VIPCIDR, c.VIPDataplane, c.VIPScheduler, c.VIPGrace)
	}
	write("vip_grace = \"an hour\"\n")
	want := `vip_grace = "an hour" is not a duration; give one with a unit, such as "1h"`
	if err := LoadConfigFile(&c, path); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadConfigFile(bad vip_grace) = %v, want %q", err, want)
	}
}

// inMemory is the data plane map of agents under test: "nftables" is dp.
func inMemory(dp *memDataplane) map[string]DataplaneFactory {
	return map[string]DataplaneFactory{DataplaneNFTables: func(DataplaneOptions) (vip.Dataplane, error) { return dp, nil }}
}

// TestVIPClientAgent: a service registered on a client agent gets its
// VIP from the server's allocator; the client learns it through its
// forwarded blocking queries, balances it and answers it in DNS.
func TestVIPClientAgent(t *testing.T) {
	scfg := clusterConfig(t, "s0", true, 1)
	scfg.VIPCIDR = "10.200.0.0/24"
	sdp := &memDataplane{}
	s := startAgentWith(t, scfg, func(a *Agent) { a.dataplanes = inMemory(sdp) })
	ccfg := clusterConfig(t, "c0", false, 0, s.SerfAddr())
	ccfg.VIPCIDR = "10.200.0.0/24"
	ccfg.Ports.DNS = 0
	cdp := &memDataplane{}
	c := startAgentWith(t, ccfg, func(a *Agent) { a.dataplanes = inMemory(cdp) })
	waitLeader(t, c.client)

	err := c.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "api-1", Name: "api", Address: "127.0.0.21", Port: 9000})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		name string
		dp   *memDataplane
	}{{"client", cdp}, {"server", sdp}} {
		eventually(t, "the "+x.name+"'s data plane balances api's VIP", 15*time.Second, func() (bool, string) {
			got := x.dp.String()
			return got == "api 10.200.0.1 tcp/9000 -> 127.0.0.21:9000", got
		})
	}
	eventually(t, "the client's DNS answers api's VIP", 10*time.Second, func() (bool, string) {
		m, err := dnsQuery(c.DNSAddr().String(), "api.cluster", mdns.TypeA)
		if err != nil {
			return false, err.Error()
		}
		got := records(m.Answer)
		return got == "A 10.200.0.1", got
	})
	self, err := c.client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := self["Stats"]["vip"].(map[string]any); st["allocating"] != "false" || st["allocations"] != "1" {
		t.Errorf("client's Stats.vip = %v, want not allocating, 1 allocation", st)
	}
}

// TestVIPBlockingQueryWakes: a service that gets its VIP later (the
// range was full until another service's VIP was released) wakes a
// blocking health query on it, with the consul-virtual tagged address,
// though nothing else about it changed; while it had none,
// /v1/agent/self said why.
func TestVIPBlockingQueryWakes(t *testing.T) {
	cfg := devConfig()
	cfg.VIPCIDR = "10.200.0.0/31" // two addresses
	cfg.VIPGrace = time.Second
	dp := &memDataplane{}
	r := startAgentWith(t, cfg, func(a *Agent) { a.dataplanes = inMemory(dp) })
	waitLeader(t, r.client)
	for _, name := range []string{"a", "b", "c"} {
		if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: name, Name: name, Address: "127.0.0.31", Port: 80}); err != nil {
			t.Fatal(err)
		}
		if name == "b" {
			eventually(t, "a and b have VIPs", 10*time.Second, func() (bool, string) {
				got := dp.String()
				return strings.Count(got, "10.200.0.") == 2, got
			})
		}
	}
	eventually(t, "/v1/agent/self says c has no VIP and why", 10*time.Second, func() (bool, string) {
		self, err := r.client.Agent().Self()
		if err != nil {
			return false, err.Error()
		}
		st, _ := self["Stats"]["vip"].(map[string]any)
		errText, _ := st["error"].(string)
		return st["exhausted"] == "c" && strings.Contains(errText, "the VIP range is exhausted"), fmt.Sprint(st)
	})
	entries, meta, err := r.client.Health().Service("c", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("health of c = %v, %v", entries, err)
	}
	if v, ok := entries[0].Service.TaggedAddresses["consul-virtual"]; ok {
		t.Fatalf("c has a consul-virtual tagged address %+v while the range is full", v)
	}

	type answer struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		e, m, err := r.client.Health().Service("c", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second})
		done <- answer{e, m, err}
	}()
	if err := r.client.Agent().ServiceDeregister("a"); err != nil {
		t.Fatal(err)
	}
	var got answer
	select {
	case got = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the blocking query on c did not return within 15s of a's VIP being released (grace 1s): the VIP appeared without moving c's index")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if got.meta.LastIndex <= meta.LastIndex {
		t.Errorf("blocking query returned index %d, want above %d", got.meta.LastIndex, meta.LastIndex)
	}
	if len(got.entries) != 1 || got.entries[0].Service.TaggedAddresses["consul-virtual"].Address == "" {
		t.Errorf("the blocking query's answer has no consul-virtual tagged address: %+v", got.entries)
	}
	eventually(t, "the error is gone from /v1/agent/self", 10*time.Second, func() (bool, string) {
		self, err := r.client.Agent().Self()
		if err != nil {
			return false, err.Error()
		}
		st, _ := self["Stats"]["vip"].(map[string]any)
		_, has := st["exhausted"]
		return !has, fmt.Sprint(st)
	})
}

// TestVIPDNSBeforeFirstRead: an agent that has not read the allocations
// (here: restarted with no server to ask) never answers a VIP-mode
// service's instances for <name>.cluster: the VIP it kept in its data
// dir, else SERVFAIL until it knows.
func TestVIPDNSBeforeFirstRead(t *testing.T) {
	scfg := clusterConfig(t, "s0", true, 1)
	scfg.VIPCIDR = "10.200.0.0/24"
	s := startAgentWith(t, scfg, func(a *Agent) { a.dataplanes = inMemory(&memDataplane{}) })
	ccfg := clusterConfig(t, "c0", false, 0, s.SerfAddr())
	ccfg.VIPCIDR = "10.200.0.0/24"
	ccfg.Ports.DNS = 0
	c := startAgentWith(t, ccfg, func(a *Agent) { a.dataplanes = inMemory(&memDataplane{}) })
	waitLeader(t, c.client)
	if err := c.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.21", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client's DNS answers web's VIP", 15*time.Second, func() (bool, string) {
		m, err := dnsQuery(c.DNSAddr().String(), "web.cluster", mdns.TypeA)
		if err != nil {
			return false, err.Error()
		}
		got := records(m.Answer)
		return got == "A 10.200.0.1", got
	})
	c.cancel()
	<-c.done
	s.cancel()
	<-s.done

	// Again, with no server: it never reads the allocations.
	ccfg.Join = nil
	c = startAgentWith(t, ccfg, func(a *Agent) { a.dataplanes = inMemory(&memDataplane{}) })
	if err := c.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "api-1", Name: "api", Address: "127.0.0.22", Port: 9000}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		q     string
		rcode int
		want  string
	}{
		{"web.cluster", mdns.RcodeSuccess, "A 10.200.0.1"},       // kept in the data dir
		{"tasks.web.cluster", mdns.RcodeSuccess, "A 127.0.0.21"}, // the local service, restored
		{"api.cluster", mdns.RcodeServerFailure, ""},             // may have a VIP: held
		{"tasks.api.cluster", mdns.RcodeSuccess, "A 127.0.0.22"},
	} {
		eventually(t, "DNS "+tt.q, 10*time.Second, func() (bool, string) {
			m, err := dnsQuery(c.DNSAddr().String(), tt.q, mdns.TypeA)
			if err != nil {
				return false, err.Error()
			}
			got := records(m.Answer)
			return m.Rcode == tt.rcode && got == tt.want, mdns.RcodeToString[m.Rcode] + " " + got
		})
	}
}
