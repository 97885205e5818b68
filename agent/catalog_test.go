package agent

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// catalogCluster starts n client agents (no Raft: the catalog needs none)
// joined through the first, and waits until each sees all n alive.
func catalogCluster(t *testing.T, n int, tweak func(i int, c *Config)) []*running {
	t.Helper()
	var agents []*running
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{agents[0].SerfAddr()}
		}
		cfg := clusterConfig(t, fmt.Sprintf("n%d", i), false, 0, join...)
		if tweak != nil {
			tweak(i, &cfg)
		}
		agents = append(agents, startAgent(t, cfg))
	}
	// Ten agents with -race on a busy 2-core machine: suspicion and refutes
	// can take a while to settle; the deadline is generous, the check strict.
	for _, a := range agents {
		eventually(t, "every member alive on "+a.Config().NodeName, 45*time.Second, func() (bool, string) {
			ms, err := a.client.Agent().Members(false)
			if err != nil {
				return false, err.Error()
			}
			alive := 0
			for _, m := range ms {
				if m.Status == 1 {
					alive++
				}
			}
			return alive == n, fmt.Sprintf("%d of %d alive", alive, n)
		})
	}
	return agents
}

// healthOf lists "node=status" for every instance of service on a, the
// status aggregated over the instance's checks.
func healthOf(a *running, service string) (string, error) {
	entries, _, err := a.client.Health().Service(service, "", false, &api.QueryOptions{AllowStale: true})
	if err != nil {
		return "", err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Node.Node+"="+e.Checks.AggregatedStatus())
	}
	slices.Sort(out)
	return strings.Join(out, " "), nil
}

// waitHealth waits until every one of agents answers want for service.
func waitHealth(t *testing.T, agents []*running, service, want string, within time.Duration) {
	t.Helper()
	for _, a := range agents {
		eventually(t, fmt.Sprintf("%s on %s is %q", service, a.Config().NodeName, want), within, func() (bool, string) {
			got, err := healthOf(a, service)
			if err != nil {
				return false, err.Error()
			}
			return got == want, got
		})
	}
}

func TestCatalogReplicatesAcrossThreeAgents(t *testing.T) {
	agents := catalogCluster(t, 3, func(i int, c *Config) {
		c.LeaveOnTerminate = i != 2 // n2 will be killed: it must look failed
	})
	reg := func(a *running, name string) {
		t.Helper()
		err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			Name: name, Port: 80, Check: &api.AgentServiceCheck{CheckID: name, TTL: "1h", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatalf("register %s on %s: %v", name, a.Config().NodeName, err)
		}
	}
	for _, a := range agents {
		reg(a, "web")
	}
	reg(agents[1], "cache")
	waitHealth(t, agents, "web", "n0=passing n1=passing n2=passing", 10*time.Second)
	waitHealth(t, agents, "cache", "n1=passing", 10*time.Second)

	// A check change on one agent reaches the others.
	if err := agents[0].client.Agent().FailTTL("web", "down"); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents, "web", "n0=critical n1=passing n2=passing", 10*time.Second)

	// Deregistered, then restarted: the service stays gone everywhere.
	if err := agents[1].client.Agent().ServiceDeregister("cache"); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents, "cache", "", 10*time.Second)
	cfg1 := agents[1].Config()
	if err := agents[1].stop(t); err != nil {
		t.Fatal(err)
	}
	cfg1.Join = []string{agents[0].SerfAddr()}
	seenGone(t, agents[0], cfg1.NodeName)
	agents[1] = startAgent(t, cfg1)
	waitHealth(t, agents, "web", "n0=critical n1=passing n2=passing", 15*time.Second)
	if got, _ := healthOf(agents[0], "cache"); got != "" {
		t.Errorf("cache came back after n1 restarted: %q", got)
	}

	// A killed agent (no leave): critical at once on the others.
	if err := agents[2].stop(t); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents[:2], "web", "n0=critical n1=passing n2=critical", 15*time.Second)
	entries, _, err := agents[0].client.Health().Service("web", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Node.Node == "n2" {
			t.Errorf("?passing still answers the failed agent n2")
		}
	}
	checks, _, _ := agents[0].client.Health().Node("n2", nil)
	for _, c := range checks {
		if c.CheckID == "serfHealth" && (c.Status != "critical" || c.Output != "Agent not live or unreachable") {
			t.Errorf("n2's serfHealth = %s %q; want critical", c.Status, c.Output)
		}
	}

	// A graceful leave: removed at once.
	if err := agents[1].stop(t); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents[:1], "web", "n0=critical n2=critical", 15*time.Second)
}

func TestCatalogReplicatesAcrossTenAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 10 agents")
	}
	agents := catalogCluster(t, 10, nil)
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
				ID: fmt.Sprintf("api-%d", i), Name: "api", Port: 8000 + i,
			})
			if err != nil {
				t.Errorf("register on %s: %v", a.Config().NodeName, err)
			}
		})
	}
	wg.Wait()
	var want []string
	for i := range agents {
		want = append(want, fmt.Sprintf("n%d=passing", i))
	}
	slices.Sort(want)
	waitHealth(t, agents, "api", strings.Join(want, " "), 15*time.Second)

	// One more change, timed: every agent sees it within the deadline.
	start := time.Now()
	if err := agents[3].client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "late", Port: 1}); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents, "late", "n3=passing", 10*time.Second)
	t.Logf("a registration reached all 10 agents within %v", time.Since(start).Round(time.Millisecond))
}

// TestLocalServicesSurviveRestart: services and checks registered through
// the agent API come back from the data dir.
func TestLocalServicesSurviveRestart(t *testing.T) {
	cfg := clusterConfig(t, "solo", false, 0)
	a := startAgent(t, cfg)
	agent := a.client.Agent()
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Tags: []string{"v1"}, Port: 8080, Check: &api.AgentServiceCheck{TTL: "1h"}},
		{ID: "db-1", Name: "db", Port: 5432},
		{ID: "gone", Name: "gone", Port: 1},
	} {
		if err := agent.ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := agent.ServiceDeregister("gone"); err != nil {
		t.Fatal(err)
	}
	if err := agent.CheckRegister(&api.AgentCheckRegistration{Name: "disk", AgentServiceCheck: api.AgentServiceCheck{TTL: "1h"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	b := startAgent(t, cfg)
	services, err := b.client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range services {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if want := []string{"db-1", "web-1"}; !slices.Equal(ids, want) {
		t.Errorf("services after restart = %v, want %v", ids, want)
	}
	checks, err := b.client.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 2 || checks["disk"] == nil || checks["service:web-1"] == nil {
		t.Errorf("checks after restart = %v", checks)
	}
	got, err := healthOf(b, "web")
	if err != nil || got != "solo=critical" {
		t.Errorf("web after restart = %q, %v; want solo=critical (its TTL check has to pass again)", got, err)
	}
}

// TestDeregisterCriticalServiceAfter: the check runner deregisters a
// service whose check stays critical, and a TTL check expires.
func TestDeregisterCriticalServiceAfter(t *testing.T) {
	a := startAgent(t, clusterConfig(t, "solo", false, 0))
	agent := a.client.Agent()
	err := agent.ServiceRegister(&api.AgentServiceRegistration{
		Name: "flaky", Port: 1,
		Check: &api.AgentServiceCheck{CheckID: "flaky-ttl", TTL: "1s", Status: api.HealthPassing, DeregisterCriticalServiceAfter: "1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := healthOf(a, "flaky"); got != "solo=passing" {
		t.Fatalf("flaky = %q, want passing at first", got)
	}
	eventually(t, "the TTL check expiring", 10*time.Second, func() (bool, string) {
		checks, err := agent.Checks()
		if err != nil {
			return false, err.Error()
		}
		c := checks["flaky-ttl"]
		if c == nil {
			return true, "already deregistered"
		}
		return c.Status == "critical", c.Status + " " + c.Output
	})
	eventually(t, "flaky deregistered", 10*time.Second, func() (bool, string) {
		services, err := agent.Services()
		if err != nil {
			return false, err.Error()
		}
		return services["flaky"] == nil, fmt.Sprint(len(services), " services")
	})
	if got, _ := healthOf(a, "flaky"); got != "" {
		t.Errorf("flaky is still in the catalog: %q", got)
	}
}

// TestHTTPCheckRuns: an HTTP check registered through the API is run by
// the agent and its result reaches the catalog.
func TestHTTPCheckRuns(t *testing.T) {
	a := startAgent(t, clusterConfig(t, "solo", false, 0))
	agent := a.client.Agent()
	// The agent's own HTTP API is the service under check.
	url := "http://" + a.HTTPAddr().String() + "/v1/status/leader"
	err := agent.ServiceRegister(&api.AgentServiceRegistration{
		Name: "self", Port: 1,
		Checks: api.AgentServiceChecks{
			{CheckID: "up", HTTP: url, Interval: "1s"},
			{CheckID: "down", TCP: "127.0.0.1:1", Interval: "1s"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the checks' first results", 10*time.Second, func() (bool, string) {
		checks, err := agent.Checks()
		if err != nil {
			return false, err.Error()
		}
		up, down := checks["up"], checks["down"]
		return up.Output != "" && down.Output != "", fmt.Sprintf("up %s %q, down %s %q", up.Status, up.Output, down.Status, down.Output)
	})
	checks, _ := agent.Checks()
	if checks["down"].Status != "critical" || !strings.Contains(checks["down"].Output, "127.0.0.1:1") {
		t.Errorf("TCP check of a closed port = %s %q", checks["down"].Status, checks["down"].Output)
	}
	if !strings.HasPrefix(checks["up"].Output, "HTTP GET "+url) {
		t.Errorf("HTTP check output = %q", checks["up"].Output)
	}
}

// TestFailedAgentPurgedAfterReconnectTimeout: a failed agent's entries are
// critical at once and gone once membership reaps it.
func TestFailedAgentPurgedAfterReconnectTimeout(t *testing.T) {
	agents := catalogCluster(t, 2, func(i int, c *Config) {
		c.ReconnectTimeout = 3 * time.Second
		c.LeaveOnTerminate = false
	})
	if err := agents[1].client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents[:1], "web", "n1=passing", 10*time.Second)
	stopped := time.Now()
	if err := agents[1].stop(t); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, agents[:1], "web", "n1=critical", 10*time.Second)
	waitHealth(t, agents[:1], "web", "", 15*time.Second)
	if took := time.Since(stopped); took < 3*time.Second {
		t.Errorf("purged %v after the stop; want no sooner than the 3s reconnect timeout", took)
	}
	nodes, _, err := agents[0].client.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 1 || nodes[0].Node != "n0" {
		t.Errorf("nodes after the purge = %v, %v; want only n0", nodes, err)
	}
}
