//go:build system

package ipvs

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/vmtest"
)

// vmModules are what the in-VM tests need: IPVS with the schedulers
// they use, dummy for the VIP interface, veth for the backends'
// namespaces, nftables NAT for the masquerade tables.
var vmModules = []string{"ip_vs", "ip_vs_rr", "ip_vs_wrr", "dummy", "veth",
	// The masquerade tables (masq.go).
	"nf_tables", "nft_chain_nat", "nft_ct", "nft_masq"}

// TestSystemIPVS boots a real IPVS kernel under qemu (vmtest) and runs
// this package's TestVM* tests in it, in one boot. Pass -bench to run
// the BenchmarkVM* benchmarks there too, e.g.
//
//	go test -tags system -run TestSystemIPVS -bench VM -benchtime 1x ./agent/vip/ipvs
func TestSystemIPVS(t *testing.T) {
	vmtest.RunTest(t, vmtest.TestOptions{
		Run:     "^TestVM",
		Modules: vmModules,
		Timeout: 10 * time.Minute,
	})
}
