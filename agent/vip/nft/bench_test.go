package nft

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"golang.org/x/sys/unix"
)

// manyServices is n VIPs in 10.99.128.0/17, each one TCP port over
// backends backends (addresses in 10.99.64.0/18; no traffic is sent).
func manyServices(n, backends int) []vip.Service {
	out := make([]vip.Service, n)
	base := netip.MustParseAddr("10.99.128.0").As4()
	beBase := netip.MustParseAddr("10.99.64.0").As4()
	for i := range n {
		a := base
		a[2] += byte(i >> 8)
		a[3] = byte(i)
		p := vip.Port{Proto: vip.TCP, Port: 80}
		for j := range backends {
			k := (i*backends + j) % (1 << 14)
			b := beBase
			b[2] += byte(k >> 8)
			b[3] = byte(k)
			p.Backends = append(p.Backends, netip.AddrPortFrom(netip.AddrFrom4(b), uint16(8000+j)))
		}
		out[i] = vip.Service{Name: fmt.Sprintf("svc%d", i), VIP: netip.AddrFrom4(a), Ports: []vip.Port{p}}
	}
	return out
}

// BenchmarkProgram10kFromEmpty: Sync of 10,000 VIPs x 10 backends into
// an empty table of a fresh namespace (the table is deleted between
// iterations, outside the timer).
func BenchmarkProgram10kFromEmpty(b *testing.B) {
	needNetNS(b)
	d := newDP(b, newNS(b, "bench"))
	ctx := context.Background()
	desired := manyServices(10000, 10)
	for b.Loop() {
		b.StopTimer()
		if err := d.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := d.Sync(ctx, desired); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(d.lastChanges), "changes/op")
}

// BenchmarkUpdateOneAt10k: one Update of one VIP while the table holds
// 10,000 VIPs x 10 backends. replace-backend swaps one backend (map
// elements only); count-change removes or restores one backend, so the
// VIP moves between balance-10 and balance-9 (a verdict map element,
// which makes the kernel validate the table's jump graph).
func BenchmarkUpdateOneAt10k(b *testing.B) {
	needNetNS(b)
	d := newDP(b, newNS(b, "bench"), func(c *Config) { c.Logger = nil })
	ctx := context.Background()
	desired := manyServices(10000, 10)
	if err := d.Sync(ctx, desired); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"replace-backend", "count-change", "replace-backend/one-transaction", "count-change/one-transaction"} {
		mode, one := strings.CutSuffix(name, "/one-transaction")
		b.Run(name, func(b *testing.B) {
			// one-transaction: what the commit cost before it was split
			// in three (see TestSystemGenerationRace), for comparison.
			d.oneTransaction = one
			defer func() { d.oneTransaction = false }()
			i := 0
			for b.Loop() {
				// Iterations go in pairs on one VIP: change, change back.
				s := desired[(i/2*7919)%len(desired)]
				p := s.Ports[0]
				be := slices.Clone(p.Backends)
				if mode == "replace-backend" {
					if i%2 == 0 {
						be[0] = netip.AddrPortFrom(be[0].Addr(), be[0].Port()+100)
					}
				} else if i%2 == 0 {
					be = be[1:]
				}
				s.Ports = []vip.Port{{Proto: p.Proto, Port: p.Port, Backends: be}}
				if err := d.Update(ctx, []vip.Service{s}, nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(d.lastChanges), "changes/op")
		})
	}
}

// BenchmarkAdoptSync10k: Sync of an intact 10,000-VIP table by a fresh
// Dataplane, as after an agent restart: reads everything, changes nothing.
func BenchmarkAdoptSync10k(b *testing.B) {
	needNetNS(b)
	ns := newNS(b, "bench")
	ctx := context.Background()
	desired := manyServices(10000, 10)
	if err := newDP(b, ns).Sync(ctx, desired); err != nil {
		b.Fatal(err)
	}
	d := newDP(b, ns)
	for b.Loop() {
		if err := d.Sync(ctx, desired); err != nil {
			b.Fatal(err)
		}
		if d.lastChanges != 0 {
			b.Fatalf("adopting Sync sent %d changes", d.lastChanges)
		}
	}
}

// BenchmarkConnectVIPvsDirect: TCP connection setup (connect, read the
// server's greeting, close) from a container-like namespace behind node1
// to one backend behind node1, directly and through the VIP, alternated
// in the same loop. Reports both medians and their ratio.
func BenchmarkConnectVIPvsDirect(b *testing.B) {
	c := newCluster(b)
	d := newDP(b, c.node1)
	if err := d.Sync(context.Background(), []vip.Service{service("web", testVIP, 80, b1Addr)}); err != nil {
		b.Fatal(err)
	}
	// The whole loop runs on this goroutine's thread, moved into the
	// client's namespace, so every socket is made there without a
	// thread switch per connection.
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open(c.client.path())
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	defer func() {
		// Back to the original namespace; if that fails the thread stays
		// locked and is retired with the goroutine.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	var direct, viaVIP []time.Duration
	buf := make([]byte, 16)
	connect := func(addr string) time.Duration {
		start := time.Now()
		conn, err := net.Dial("tcp4", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		conn.Close()
		return time.Since(start)
	}
	i := 0
	for b.Loop() {
		// Alternate which goes first, so neither pays for the other.
		if i%2 == 0 {
			direct = append(direct, connect(b1Addr))
			viaVIP = append(viaVIP, connect(vipPort))
		} else {
			viaVIP = append(viaVIP, connect(vipPort))
			direct = append(direct, connect(b1Addr))
		}
		i++
	}
	// Medians: the machine is shared, and a mean follows its load spikes.
	slices.Sort(direct)
	slices.Sort(viaVIP)
	md, mv := direct[len(direct)/2], viaVIP[len(viaVIP)/2]
	b.ReportMetric(float64(md.Nanoseconds()), "direct-ns/conn")
	b.ReportMetric(float64(mv.Nanoseconds()), "vip-ns/conn")
	b.ReportMetric(float64(mv)/float64(md), "vip/direct")
}
