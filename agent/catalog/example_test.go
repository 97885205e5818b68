package catalog_test

import (
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
)

// A catalog of one agent: register a service with a TTL check, report on
// the check, and read the healthy instances as DNS does.
func Example() {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "node-1", "10.0.0.1"
	c, err := catalog.New(cfg)
	if err != nil {
		panic(err)
	}
	err = c.RegisterService(catalog.ServiceDefinition{
		Service: catalog.Service{Name: "web", Port: 8080, Tags: []string{"v1"}},
		Checks:  []checks.Definition{{TTL: 30 * time.Second}},
	}, false)
	if err != nil {
		panic(err)
	}
	_, healthy := c.ServiceHealth(nil, "web", catalog.Filter{Passing: true})
	fmt.Println("healthy before the check passes:", len(healthy))

	if err := c.UpdateTTL("service:web", catalog.StatusPassing, "serving"); err != nil {
		panic(err)
	}
	_, healthy = c.ServiceHealth(nil, "web", catalog.Filter{Passing: true, Tags: []string{"v1"}})
	for _, in := range healthy {
		fmt.Printf("%s %s:%d", in.Service.ID, in.Node.Address, in.Service.Port)
		for _, ch := range in.Checks {
			fmt.Printf(" [%s %s]", ch.CheckID, ch.Status)
		}
		fmt.Println()
	}
	// Output:
	// healthy before the check passes: 0
	// web 10.0.0.1:8080 [serfHealth passing] [service:web passing]
}
