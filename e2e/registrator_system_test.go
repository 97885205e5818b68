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

// TestSystemBurstThroughConsulAPI is the anchor case: upstream
// registrator v7.4.0, against a cairn agent, left 19 of 50 containers
// registered after they were all removed with docker rm -f. Here N
// containers (CAIRN_SYSTEM_CONSUL_BURST; 50 under CI=true, else 20) are
// started at once, all must be on the agent, then all removed, and none
// may be left.
func TestSystemBurstThroughConsulAPI(t *testing.T) {
	n := 20
	if systemtest.InCI() {
		n = 50
	}
	if v := os.Getenv("CAIRN_SYSTEM_CONSUL_BURST"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("CAIRN_SYSTEM_CONSUL_BURST=%q: want a positive count", v)
		}
	}
	rc := newRegCluster(t)
	rc.startRegistrator()
	name := rc.e.Prefix + "burst"
	specs := make([]dockertest.ContainerSpec, n)
	for i := range specs {
		specs[i] = dockertest.ContainerSpec{Name: fmt.Sprintf("b%03d", i), TCP: []int{80}, Labels: map[string]string{"SERVICE_NAME": name}}
	}
	cs := rc.e.RunMany(specs, 4)
	var want []string
	for _, c := range cs {
		want = append(want, rc.hostname+":"+c.Name+":80")
	}
	slices.Sort(want)
	eventually(t, fmt.Sprintf("all %d containers on the local agent", n), 2*time.Minute, func() (bool, string) {
		got, err := rc.localIDs()
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%d of %d", len(got), len(want))
	})
	eventually(t, fmt.Sprintf("all %d instances of %s in %s's catalog", n, name, rc.other().name), time.Minute, func() (bool, string) {
		svcs, _, err := rc.other().api.Catalog().Service(name, "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(svcs) == n, fmt.Sprintf("%d of %d", len(svcs), n)
	})

	rc.e.RemoveMany(cs, 4)
	eventually(t, "no registration left on the local agent after docker rm -f", 2*time.Minute, func() (bool, string) {
		got, err := rc.localIDs()
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 0, fmt.Sprintf("%d left: %s", len(got), strings.Join(got[:min(len(got), 5)], " "))
	})
	eventually(t, "no instance of "+name+" left in "+rc.other().name+"'s catalog", time.Minute, func() (bool, string) {
		svcs, _, err := rc.other().api.Catalog().Service(name, "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(svcs) == 0, fmt.Sprintf("%d left", len(svcs))
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
