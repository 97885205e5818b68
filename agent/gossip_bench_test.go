package agent

import (
	"fmt"
	"testing"
)

// BenchmarkCatalogConvergenceSigning is BenchmarkCatalogConvergence with
// signed catalog records (the default: each agent signs its records,
// every receiver checks them) and without, side by side in one run, so
// their ratio is what signing costs on convergence:
//
//	go test -run '^$' -bench CatalogConvergenceSigning -benchtime 20x ./agent
func BenchmarkCatalogConvergenceSigning(b *testing.B) {
	for _, n := range []int{10} {
		for _, signed := range []bool{false, true} {
			b.Run(fmt.Sprintf("agents=%d/signed=%v", n, signed), func(b *testing.B) {
				clients := benchCluster(b, n, func(a *Agent) { a.unsignedGossip = !signed })
				measureConvergence(b, clients)
			})
		}
	}
}
