package catalog

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairn-dev/cairn/agent/checks"
)

// TestCheckOutputWaitsForCheckUpdateInterval: a new status is spread at
// once; new output alone waits CheckUpdateInterval (Consul's
// check_update_interval), then goes out.
func TestCheckOutputWaitsForCheckUpdateInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCatalog(t, func(c *Config) { c.CheckUpdateInterval = time.Minute })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx, newFakeGossip(), nil)
		if err := c.RegisterService(ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{TTL: time.Hour}}}, false); err != nil {
			t.Fatal(err)
		}
		output := func() string {
			_, insts := c.ServiceHealth(nil, "web", Filter{})
			return insts[0].Checks[1].Output
		}
		if err := c.UpdateTTL("service:web", StatusPassing, "first"); err != nil {
			t.Fatal(err)
		}
		if got := output(); got != "first" {
			t.Fatalf("after a status change the output is %q, want first", got)
		}
		v := c.Version()
		if err := c.UpdateTTL("service:web", StatusPassing, "second"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if got, gotV := output(), c.Version(); got != "first" || gotV != v {
			t.Errorf("59s after an output-only change: output %q, version %d; want first and %d still", got, gotV, v)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got, gotV := output(), c.Version(); got != "second" || gotV != v+1 {
			t.Errorf("61s after an output-only change: output %q, version %d; want second and %d", got, gotV, v+1)
		}
	})
}

// TestForgetsStatesOfNonMembers: the state of an agent that is not a
// member is kept ForgetAfter (it may be joining), then dropped.
func TestForgetsStatesOfNonMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fm := newFakeMembers()
		c := newTestCatalog(t, func(c *Config) { c.Members = fm; c.ForgetAfter = 10 * time.Minute })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx, nil, nil)
		c.GossipHandler().NotifyMsg(append([]byte{msgRecord}, record("ghost", 1, remoteState("ghost", "web"))...))
		synctest.Wait()
		held := func() bool {
			c.rmu.Lock()
			defer c.rmu.Unlock()
			return c.remotes["ghost"] != nil
		}
		if !held() || instances(c, "web") != nil {
			t.Fatalf("a non-member's state: held %v, shown %v; want held and hidden", held(), instances(c, "web"))
		}
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		if !held() {
			t.Error("dropped before ForgetAfter")
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if held() {
			t.Error("still held 12 minutes later; ForgetAfter is 10")
		}
	})
}
