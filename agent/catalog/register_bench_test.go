package catalog_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
)

// BenchmarkRegisterService registers services through the agent API on
// a catalog that already holds `have` of them, with and without a data
// dir: the cost per registration must not grow with have.
//
//	go test -run '^$' -bench RegisterService -cpuprofile cpu.out ./agent/catalog
func BenchmarkRegisterService(b *testing.B) {
	for _, disk := range []bool{false, true} {
		for _, have := range []int{0, 2000} {
			b.Run(fmt.Sprintf("disk=%v/have=%d", disk, have), func(b *testing.B) {
				cfg := catalog.DefaultConfig()
				cfg.NodeName, cfg.Address = "self", "10.255.0.1"
				if disk {
					cfg.DataDir = b.TempDir()
				}
				c, err := catalog.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				reg := func(i int) {
					err := c.RegisterService(catalog.ServiceDefinition{
						Service: catalog.Service{ID: fmt.Sprintf("s-%07d", i), Name: fmt.Sprintf("svc-%d", i%100), Port: 1000 + i%50000, Tags: []string{"v1"}},
						Checks:  []checks.Definition{{TTL: time.Hour, Status: checks.Status(catalog.StatusPassing)}},
					}, false)
					if err != nil {
						b.Fatal(err)
					}
				}
				for i := range have {
					reg(i)
				}
				i := have
				b.ResetTimer()
				for b.Loop() {
					reg(i)
					i++
				}
			})
		}
	}
}
