package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestKill9KeepsAcknowledgedRegistrations kills the agent while clients
// register services (agent API) and external nodes (catalog API)
// concurrently, then checks that every registration it acknowledged is
// there after a restart on the same data dir: the catalog's log syncs a
// group of registrations at once, and acknowledges none before its sync.
func TestKill9KeepsAcknowledgedRegistrations(t *testing.T) {
	t.Parallel()
	const writers, killAfter = 4, 300
	dir := filepath.Join(t.TempDir(), "data")
	p := freePorts(t)

	first := start(t, "killed run", serverArgs(dir, p)...)
	c := first.waitLeader(p.httpAddr())

	var (
		mu       sync.Mutex
		services = map[string]bool{}
		nodes    = map[string]bool{}
		count    atomic.Int64
		enough   = make(chan struct{})
		once     sync.Once
		writing  sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for w := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				var name string
				if (w+i)%2 == 0 {
					name = fmt.Sprintf("svc-w%d-%05d", w, i)
					err = c.Agent().ServiceRegisterOpts(&api.AgentServiceRegistration{
						ID: name, Name: "acked", Port: 1000 + i,
						Check: &api.AgentServiceCheck{TTL: "1h"},
					}, api.ServiceRegisterOpts{}.WithContext(ctx))
				} else {
					name = fmt.Sprintf("ext-w%d-%05d", w, i)
					_, err = c.Catalog().Register(&api.CatalogRegistration{
						Node: name, Address: "10.9.9.9",
						Service: &api.AgentService{ID: "db", Service: "external-db", Port: 5432},
					}, (&api.WriteOptions{}).WithContext(ctx))
				}
				if err != nil {
					continue
				}
				mu.Lock()
				if strings.HasPrefix(name, "svc-") {
					services[name] = true
				} else {
					nodes[name] = true
				}
				mu.Unlock()
				if count.Add(1) >= killAfter {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d registrations acknowledged in 60s", count.Load())
	}
	first.signal(syscall.SIGKILL)
	first.wait(10 * time.Second)
	stop()
	writing.Wait()
	t.Logf("%d services and %d external nodes acknowledged before kill -9", len(services), len(nodes))

	second := start(t, "after kill -9", serverArgs(dir, p)...)
	c2 := second.waitLeader(p.httpAddr())
	have, err := c2.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for name := range services {
		if have[name] == nil {
			lost = append(lost, name)
		}
	}
	entries, _, err := c2.Catalog().Service("external-db", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	haveNodes := map[string]bool{}
	for _, e := range entries {
		haveNodes[e.Node] = true
	}
	for name := range nodes {
		if !haveNodes[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged registrations lost after kill -9: %s", len(lost), len(services)+len(nodes), strings.Join(lost[:min(len(lost), 10)], ", "))
	}
}
