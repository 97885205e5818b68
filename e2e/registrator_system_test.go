//go:build system && unix

package e2e

// The registrator through its real consul:// backend: containers on the
// machine's Docker engine, registrator writing to a cairn client agent
// (c0) over HTTP as upstream registrator writes to its local Consul
// agent, and the services checked on another agent (the server s0): in
// its catalog and in its DNS answers.
//
// Run with: go test -tags system -run '^TestSystem' -count=1 ./e2e/
// (the benchmark: -run '^$' -bench SystemStartToDNS -benchtime=200x).

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/dockertest"
	"github.com/cairn-dev/cairn/registrator/registratortest"
	"github.com/cairn-dev/cairn/systemtest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// regCluster is a one-server, one-client cairn cluster with a
// registrator writing to the client.
type regCluster struct {
	t        *testing.T
	e        *dockertest.Engine
	cl       *testCluster
	hostname string
}

func newRegCluster(t *testing.T) *regCluster {
	e := dockertest.NeedDocker(t)
	e.Image() // build before the agents start: the build is the slow part
	return &regCluster{t: t, e: e, cl: newCluster(t, 1, 1), hostname: strings.TrimSuffix(e.Prefix, "-")}
}

func (rc *regCluster) local() *clusterNode { return rc.cl.clients[0] }
func (rc *regCluster) other() *clusterNode { return rc.cl.servers[0] }

// startRegistrator runs registrator consul://<c0> -internal until the
// returned stop is called or the test ends.
func (rc *regCluster) startRegistrator() (stop func()) {
	rc.t.Helper()
	u := &url.URL{Scheme: "consul", Host: rc.local().ports.httpAddr()}
	backend, err := registrator.NewConsul(u)
	if err != nil {
		rc.t.Fatal(err)
	}
	eng, err := registrator.NewDockerEngine(rc.e.Host)
	if err != nil {
		rc.t.Fatal(err)
	}
	cfg := registrator.DefaultConfig()
	cfg.Hostname = rc.hostname
	cfg.Internal = true
	cfg.HostIP = "127.0.0.1" // unused with -internal; saves a lookup of the per-test hostname
	cfg.TTL = 15 * time.Second
	return registratortest.Start(rc.t, cfg, eng, backend, eng.Close)
}

// dnsA asks agent n's DNS server for name's A records, sorted.
func dnsA(n *clusterNode, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	in, _, err := c.Exchange(m, net.JoinHostPort("127.0.0.1", strconv.Itoa(n.ports.dns)))
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[in.Rcode])
	}
	var out []string
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return out, nil
}

// waitDNS waits until tasks.<name>.cluster on the other agent answers
// exactly addrs.
func (rc *regCluster) waitDNS(name string, addrs []string, within time.Duration) {
	rc.t.Helper()
	want := slices.Sorted(slices.Values(addrs))
	eventually(rc.t, fmt.Sprintf("tasks.%s.cluster on %s to answer %v", name, rc.other().name, want), within, func() (bool, string) {
		got, err := dnsA(rc.other(), "tasks."+name+".cluster")
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want) || (len(got) == 0 && len(want) == 0), fmt.Sprint(got)
	})
}

// localIDs are the service IDs the test's registrator gave the test's
// own containers on the local agent (it registers every container on the
// engine; others may be running).
func (rc *regCluster) localIDs() ([]string, error) {
	svcs, err := rc.local().api.Agent().Services()
	if err != nil {
		return nil, err
	}
	var ids []string
	for id := range svcs {
		if strings.HasPrefix(id, rc.hostname+":"+rc.e.Prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// TestSystemRegistratorThroughConsulAPI: containers become services on
// the local agent with registrator's IDs and checks, the other agent's
// catalog and DNS follow (only passing instances: an unhealthy container
// leaves the DNS answer), and after registrator is stopped while
// containers change, a restarted one makes the agent match docker ps.
func TestSystemRegistratorThroughConsulAPI(t *testing.T) {
	rc := newRegCluster(t)
	name := rc.e.Prefix + "web"
	stop := rc.startRegistrator()

	spec := func(n string, hc bool) dockertest.ContainerSpec {
		return dockertest.ContainerSpec{Name: n, TCP: []int{80}, Healthcheck: hc, Labels: map[string]string{
			"SERVICE_NAME": name, "SERVICE_TAGS": "e2e", "SERVICE_VERSION": "1",
		}}
	}
	cs := rc.e.RunMany([]dockertest.ContainerSpec{spec("w0", false), spec("w1", false), spec("hc", true)}, 3)
	addrs := func(cs ...*dockertest.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.IP("bridge"))
		}
		return out
	}
	rc.waitDNS(name, addrs(cs...), 60*time.Second)

	// The other agent's catalog has them as registrator made them.
	entries, _, err := rc.other().api.Health().Service(name, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("health/service/%s on %s: %d entries, want 3", name, rc.other().name, len(entries))
	}
	for _, en := range entries {
		s := en.Service
		c := cs[slices.IndexFunc(cs, func(c *dockertest.Container) bool { return s.ID == rc.hostname+":"+c.Name+":80" })]
		if s.Address != c.IP("bridge") || s.Port != 80 || !slices.Equal(s.Tags, []string{"e2e"}) || s.Meta["version"] != "1" {
			t.Errorf("%s on %s: address %s port %d tags %v meta %v; want %s 80 [e2e] version=1", s.ID, rc.other().name, s.Address, s.Port, s.Tags, s.Meta, c.IP("bridge"))
		}
		hasStatus := slices.ContainsFunc(en.Checks, func(ch *api.HealthCheck) bool { return ch.CheckID == registrator.StatusCheckID(s.ID) })
		if want := strings.HasSuffix(c.Name, "-hc"); hasStatus != want {
			t.Errorf("%s: registrator status check present = %v, want %v (only the container with a HEALTHCHECK has one); checks %v", s.ID, hasStatus, want, en.Checks)
		}
	}

	// An unhealthy container leaves the answer, and comes back.
	hc := cs[2]
	hc.SetHealthy(false)
	rc.waitDNS(name, addrs(cs[0], cs[1]), 30*time.Second)
	hc.SetHealthy(true)
	rc.waitDNS(name, addrs(cs...), 30*time.Second)

	// registrator stopped while containers change; restarted, the agent
	// holds exactly what docker ps shows.
	stop()
	cs[0].Remove()
	more := rc.e.Run(spec("w2", false))
	rc.startRegistrator()
	want := []string{rc.hostname + ":" + cs[1].Name + ":80", rc.hostname + ":" + hc.Name + ":80", rc.hostname + ":" + more.Name + ":80"}
	slices.Sort(want)
	eventually(t, "the local agent's services to match docker ps", 60*time.Second, func() (bool, string) {
		got, err := rc.localIDs()
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%v, want %v", got, want)
	})
	rc.waitDNS(name, addrs(cs[1], hc, more), 30*time.Second)

	rc.e.RemoveMany([]*dockertest.Container{cs[1], hc, more}, 3)
	rc.waitDNS(name, nil, 30*time.Second)
}

// dockerAgent starts one more client agent, d0, running the registrator
// in-process (cairn agent -docker) against the test's engine, with
// extra flags, and waits until it knows the leader.
func (rc *regCluster) dockerAgent(extra ...string) *clusterNode {
	rc.t.Helper()
	p := clusterPorts(rc.t)
	n := &clusterNode{
		t: rc.t, name: "d0", ports: p, dataDir: rc.t.TempDir() + "/d0", api: boundedClient(rc.t, p.httpAddr()),
		extra: append([]string{"-docker", "-docker-host", rc.e.Host}, extra...),
	}
	n.start(rc.other().ports.serfAddr())
	rc.cl.waitReady(n)
	return n
}

// ownIDs are node n's services whose IDs start with prefix (the
// registrator's hostname and the test's container prefix), sorted.
func ownIDs(n *clusterNode, prefix string) ([]string, error) {
	svcs, err := n.api.Agent().Services()
	if err != nil {
		return nil, err
	}
	var ids []string
	for id := range svcs {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// burstSize is CAIRN_SYSTEM_BURST, else 500 under CI=true and 50
// elsewhere.
func burstSize(t *testing.T) int {
	if v := os.Getenv("CAIRN_SYSTEM_BURST"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CAIRN_SYSTEM_BURST=%q: want a positive number of containers", v)
		}
		return n
	}
	if systemtest.InCI() {
		return 500
	}
	return 50
}

// TestSystemBurst is the anchor case, seen by the registrator's
// three consumers at once: upstream registrator v7.4.0, against a cairn
// agent, left 19 of 50 containers registered after they were all removed
// with docker rm -f. One burst of N containers (CAIRN_SYSTEM_BURST; 500
// under CI=true, else 50) is started as fast as the engine takes them
// and then removed, watched by
//   - a standalone registrator writing to an in-memory registry,
//   - registrator consul:// writing to agent c0 over its HTTP API,
//   - agent d0's in-process registrator (cairn agent -docker);
//
// each must hold all N after the starts (and s0's catalog 2N instances
// of the service, from c0 and d0), then none after the removals: none
// lost, none stale. Containers publish nothing (N docker-proxy processes
// would cost more than the test), so all three run with -internal.
func TestSystemBurst(t *testing.T) {
	n := burstSize(t)
	rc := newRegCluster(t)
	d0 := rc.dockerAgent("-docker-internal")
	rc.startRegistrator()
	memHost := rc.hostname + "-mem"
	mem := registratortest.NewRegistry()
	mem.Quiet()
	eng, err := registrator.NewDockerEngine(rc.e.Host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := registrator.DefaultConfig()
	cfg.Hostname, cfg.Internal, cfg.HostIP = memHost, true, "127.0.0.1"
	registratortest.Start(t, cfg, eng, mem, eng.Close)

	name := rc.e.Prefix + "burst"
	specs := make([]dockertest.ContainerSpec, n)
	for i := range specs {
		specs[i] = dockertest.ContainerSpec{Name: fmt.Sprintf("b%03d", i), TCP: []int{80}, Labels: map[string]string{"SERVICE_NAME": name}}
	}
	consumers := []struct {
		name string
		host string // the registrator's hostname: the IDs' first part
		ids  func(prefix string) ([]string, error)
	}{
		{"standalone registrator (in-memory registry)", memHost, func(prefix string) ([]string, error) {
			svcs, err := mem.Services(t.Context())
			var ids []string
			for _, s := range svcs {
				if strings.HasPrefix(s.ID, prefix) {
					ids = append(ids, s.ID)
				}
			}
			slices.Sort(ids)
			return ids, err
		}},
		{"registrator consul:// on " + rc.local().name, rc.hostname, func(prefix string) ([]string, error) { return ownIDs(rc.local(), prefix) }},
		{"cairn agent -docker on " + d0.name, d0.name, func(prefix string) ([]string, error) { return ownIDs(d0, prefix) }},
	}

	// The engine serialises much of a start; more than a few at once
	// only queues on 2 cores.
	const parallel = 4
	t0 := time.Now()
	cs := rc.e.RunMany(specs, parallel)
	started := time.Since(t0)
	for _, c := range consumers {
		var want []string
		for _, x := range cs {
			want = append(want, c.host+":"+x.Name+":80")
		}
		slices.Sort(want)
		eventually(t, fmt.Sprintf("%s: all %d containers registered", c.name, n), 2*time.Minute, func() (bool, string) {
			got, err := c.ids(c.host + ":" + rc.e.Prefix)
			if err != nil {
				return false, err.Error()
			}
			return slices.Equal(got, want), idDiff(got, want)
		})
	}
	registered := time.Since(t0)
	eventually(t, fmt.Sprintf("%d instances of %s in %s's catalog (from %s and %s)", 2*n, name, rc.other().name, rc.local().name, d0.name), time.Minute, func() (bool, string) {
		svcs, _, err := rc.other().api.Catalog().Service(name, "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(svcs) == 2*n, fmt.Sprintf("%d of %d", len(svcs), 2*n)
	})

	t1 := time.Now()
	rc.e.RemoveMany(cs, parallel)
	removed := time.Since(t1)
	for _, c := range consumers {
		eventually(t, c.name+": no registration left after docker rm -f", 2*time.Minute, func() (bool, string) {
			got, err := c.ids(c.host + ":" + rc.e.Prefix)
			if err != nil {
				return false, err.Error()
			}
			return len(got) == 0, idDiff(got, nil)
		})
	}
	eventually(t, "no instance of "+name+" left in "+rc.other().name+"'s catalog", time.Minute, func() (bool, string) {
		svcs, _, err := rc.other().api.Catalog().Service(name, "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(svcs) == 0, fmt.Sprintf("%d left", len(svcs))
	})
	t.Logf("burst of %d: started in %v (%.1f/s), registered by all three %v after the first start; removed in %v, deregistered by all three %v after the first removal",
		n, started.Round(time.Millisecond), float64(n)/started.Seconds(), registered.Round(time.Millisecond),
		removed.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
}

// idDiff says how got differs from want.
func idDiff(got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			extra = append(extra, g)
		}
	}
	abbrev := func(s []string) string {
		if len(s) > 5 {
			return fmt.Sprintf("%v ... (%d in all)", s[:5], len(s))
		}
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%d registered, %d wanted; missing %s; stale %s", len(got), len(want), abbrev(missing), abbrev(extra))
}

// TestSystemInProcessRegistrator: cairn agent -docker against the real
// engine. Label forms become the agent's services as registrator makes
// them (IDs <node>:<container>:<port>, published ports at -docker-ip,
// -docker-tags added, SERVICE_* attributes as Meta); a SERVICE_CHECK_HTTP
// check runs, a SERVICE_CHECK_DOCKER check runs inside its container
// (docker exec: exit 0 passing, 1 warning); docker stop, docker kill and
// a crash each deregister.
func TestSystemInProcessRegistrator(t *testing.T) {
	rc := newRegCluster(t)
	d0 := rc.dockerAgent("-docker-ip", "127.0.0.1", "-docker-tags", "inproc", "-enable-script-checks")
	web := rc.e.Prefix + "web"
	pub := func(n string, labels map[string]string) dockertest.ContainerSpec {
		return dockertest.ContainerSpec{Name: n, TCP: []int{80}, Publish: true, Labels: labels}
	}
	cs := rc.e.RunMany([]dockertest.ContainerSpec{
		pub("labels", map[string]string{"SERVICE_NAME": web, "SERVICE_TAGS": "a,b", "SERVICE_REGION": "eu",
			"SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "1s"}),
		pub("dock", map[string]string{"SERVICE_NAME": rc.e.Prefix + "dock",
			"SERVICE_CHECK_DOCKER": dockertest.ServerPath + " -probe", "SERVICE_CHECK_INTERVAL": "1s"}),
		pub("stop", nil), pub("kill", nil), pub("die", nil),
	}, 5)
	labels, dock := cs[0], cs[1]
	id := func(c *dockertest.Container) string { return d0.name + ":" + c.Name + ":80" }
	port := func(c *dockertest.Container) int {
		hp := c.HostPort("80/tcp")
		p, err := strconv.Atoi(hp[strings.LastIndex(hp, ":")+1:])
		if err != nil {
			t.Fatalf("host port of %s: %q", c.Name, hp)
		}
		return p
	}
	prefix := d0.name + ":" + rc.e.Prefix
	var all []string
	for _, c := range cs {
		all = append(all, id(c))
	}
	slices.Sort(all)
	eventually(t, "the 5 containers registered on "+d0.name, time.Minute, func() (bool, string) {
		got, err := ownIDs(d0, prefix)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, all), idDiff(got, all)
	})

	svcs, err := d0.api.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	type reg struct {
		Name, Address string
		Port          int
		Tags          []string
		Meta          map[string]string
	}
	want := map[string]reg{
		id(labels): {Name: web, Address: "127.0.0.1", Port: port(labels), Tags: []string{"a", "b", "inproc"},
			Meta: map[string]string{"region": "eu", "check_http": "/health", "check_interval": "1s", "vip_port": "80"}},
		id(dock): {Name: rc.e.Prefix + "dock", Address: "127.0.0.1", Port: port(dock), Tags: []string{"inproc"},
			Meta: map[string]string{"check_docker": dockertest.ServerPath + " -probe", "check_interval": "1s", "vip_port": "80"}},
		id(cs[2]): {Name: "cairn-testserver", Address: "127.0.0.1", Port: port(cs[2]), Tags: []string{"inproc"}, Meta: map[string]string{"vip_port": "80"}},
	}
	for sid, w := range want {
		s := svcs[sid]
		if s == nil {
			t.Errorf("%s not registered", sid)
			continue
		}
		got := reg{Name: s.Service, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta}
		if diff := cmp.Diff(w, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", sid, diff)
		}
	}

	// The checks run: HTTP against the published port, Docker inside
	// the container.
	checkIs := func(sid, typ, status string) {
		t.Helper()
		eventually(t, fmt.Sprintf("check service:%s (%s) %s", sid, typ, status), 30*time.Second, func() (bool, string) {
			checks, err := d0.api.Agent().Checks()
			if err != nil {
				return false, err.Error()
			}
			c := checks["service:"+sid]
			if c == nil {
				return false, "no such check"
			}
			return c.Type == typ && c.Status == status, fmt.Sprintf("%s %s %q", c.Type, c.Status, c.Output)
		})
	}
	checkIs(id(labels), "http", "passing")
	checkIs(id(dock), "docker", "passing")
	dock.SetHealthy(false) // -probe exits 1
	checkIs(id(dock), "docker", "warning")
	dock.SetHealthy(true)
	checkIs(id(dock), "docker", "passing")

	steps := []struct {
		what string
		do   func(c *dockertest.Container)
	}{
		{"docker stop", func(c *dockertest.Container) { c.Stop(-1) }},
		{"docker kill", func(c *dockertest.Container) { c.Kill("") }},
		{"a crash (exit 3)", func(c *dockertest.Container) { c.Exit(3) }},
	}
	left := slices.Clone(all)
	for i, step := range steps {
		c := cs[2+i]
		step.do(c)
		left = slices.DeleteFunc(left, func(s string) bool { return s == id(c) })
		eventually(t, id(c)+" deregistered after "+step.what, 30*time.Second, func() (bool, string) {
			got, err := ownIDs(d0, prefix)
			if err != nil {
				return false, err.Error()
			}
			return slices.Equal(got, left), idDiff(got, left)
		})
	}
	rc.e.RemoveMany([]*dockertest.Container{labels, dock}, 2)
	eventually(t, "nothing of the test's left on "+d0.name, 30*time.Second, func() (bool, string) {
		got, err := ownIDs(d0, prefix)
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 0, idDiff(got, nil)
	})
}

// TestSystemStartToDNSLatency measures, per container start, the time
// from the engine's start event to the instance being registered on the
// local agent and to it being answered by the other agent's DNS (both
// polled every 2ms on loopback). It starts CAIRN_SYSTEM_LATENCY_STARTS
// containers one after the other (default 10; 200 for the figures in the
// issue) and logs p50/p99; it asserts nothing about the times.
func TestSystemStartToDNSLatency(t *testing.T) {
	n := 10
	if v := os.Getenv("CAIRN_SYSTEM_LATENCY_STARTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("CAIRN_SYSTEM_LATENCY_STARTS=%q: want a positive count", v)
		}
	}
	rc := newRegCluster(t)
	rc.startRegistrator()
	var toAgent, toDNS []time.Duration
	var cs []*dockertest.Container
	for i := range n {
		name := fmt.Sprintf("%sl%03d", rc.e.Prefix, i)
		c := rc.e.Run(dockertest.ContainerSpec{Name: fmt.Sprintf("l%03d", i), TCP: []int{80}, NoStart: true,
			Labels: map[string]string{"SERVICE_NAME": name}})
		cs = append(cs, c)
		started := c.StartTimed()
		ip := c.IP("bridge")
		id := rc.hostname + ":" + c.Name + ":80"
		var atAgent, atDNS time.Time
		eventually(t, name+" registered on "+rc.local().name+" and in "+rc.other().name+"'s DNS", 30*time.Second, func() (bool, string) {
			if atAgent.IsZero() {
				if s, _, err := rc.local().api.Agent().Service(id, nil); err == nil && s != nil {
					atAgent = time.Now()
				}
			}
			if atDNS.IsZero() {
				if got, err := dnsA(rc.other(), "tasks."+name+".cluster"); err == nil && slices.Equal(got, []string{ip}) {
					atDNS = time.Now()
				}
			}
			return !atAgent.IsZero() && !atDNS.IsZero(), fmt.Sprintf("on agent: %v, in DNS: %v", !atAgent.IsZero(), !atDNS.IsZero())
		})
		toAgent = append(toAgent, atAgent.Sub(started))
		toDNS = append(toDNS, atDNS.Sub(started))
	}
	t.Logf("start event -> registered on the local agent, %d starts: %s", n, percentiles(toAgent))
	t.Logf("start event -> in the other agent's DNS,     %d starts: %s", n, percentiles(toDNS))
	rc.e.RemoveMany(cs, 4)
}

// percentiles formats p50, p99 and max of ds.
func percentiles(ds []time.Duration) string {
	s := slices.Sorted(slices.Values(ds))
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v p99 %v max %v", at(0.50), at(0.99), s[len(s)-1].Round(100*time.Microsecond))
}
