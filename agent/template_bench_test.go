package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/consuljson"
)

// BenchmarkTemplateHealthAnswer is what the in-process template source
// spends turning one service's health answer (3 instances, 2 checks each)
// into the official client's types through agent/consuljson.
func BenchmarkTemplateHealthAnswer(b *testing.B) {
	var insts []catalog.Instance
	for i := range 3 {
		node := &catalog.Node{Node: fmt.Sprint("n", i), Address: fmt.Sprint("10.0.0.", i), Datacenter: "dc1", Meta: map[string]string{"rack": "r1"}}
		insts = append(insts, catalog.Instance{
			Node:    node,
			Service: &catalog.Service{ID: fmt.Sprint("web-", i), Name: "web", Port: 8080, Tags: []string{"v1"}, Meta: map[string]string{"v": "1"}},
			Checks: []*catalog.Check{
				{Node: node.Node, CheckID: catalog.SerfCheckID, Name: catalog.SerfCheckName, Status: catalog.StatusPassing},
				{Node: node.Node, CheckID: "web", Status: catalog.StatusPassing, Type: "http",
					Definition: catalog.Definition{HTTP: "http://10.0.0.1:8080/health", Interval: 10 * time.Second}},
			},
		})
	}
	for b.Loop() {
		entries := make([]consuljson.ServiceEntry, 0, len(insts))
		for _, in := range insts {
			entries = append(entries, consuljson.FromHealth(in))
		}
		if _, err := asClient[[]*api.ServiceEntry](entries); err != nil {
			b.Fatal(err)
		}
	}
}
