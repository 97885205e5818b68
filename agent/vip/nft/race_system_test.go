//go:build system

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"golang.org/x/sys/unix"
)

// TestSystemGenerationRace is the evidence for committing an Update in
// three netlink transactions (builder.commit). The kernel walks a
// chain's rules in the generation a packet entered the hook with, but
// looks map elements up in the current one; so a single transaction
// that adds balance-N-S and points the service-ips element at it can
// send a packet that entered before the commit into a chain with no
// rules in its generation: it leaves without DNAT, and its conntrack
// entry keeps it that way (a TCP connection then times out).
//
// In a namespace of its own, the test sends UDP datagrams to a VIP as
// fast as it can, each from a new source port (a new conntrack entry,
// so a new NAT decision), while it changes the VIP's backend count
// (1, 2, 3, 2, ...) as fast as it can. The VIP's own address is on the
// loopback interface with a listener: a datagram that was not DNATed
// reaches it (a leak) instead of a backend. It runs the data plane with
// one transaction per commit, then with three, for the same time, and
// requires no leak with three. The counts are logged: the leaks with one
// transaction are the evidence that the race is real.
func TestSystemGenerationRace(t *testing.T) {
	needNetNS(t)
	ns := newNS(t, "race")
	const (
		vipAddr = "10.99.70.1"
		port    = 9000
	)
	backends := []string{"10.99.71.1", "10.99.71.2", "10.99.71.3"}
	for _, a := range append([]string{vipAddr}, backends...) {
		ns.ip(t, "addr add "+a+"/32 dev lo")
	}
	// Datagrams are never answered: let their conntrack entries go soon.
	ns.sysctl(t, "net.netfilter.nf_conntrack_udp_timeout", "1")

	var leaks, delivered atomic.Int64
	listen := func(addr string, n *atomic.Int64) {
		var pc net.PacketConn
		if err := ns.do(func() error {
			var err error
			pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", addr, port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	}
	listen(vipAddr, &leaks)
	for _, b := range backends {
		listen(b, &delivered)
	}

	d := newDP(t, ns)
	svc := func(n int) vip.Service {
		p := vip.Port{Proto: vip.UDP, Port: port}
		for _, b := range backends[:n] {
			p.Backends = append(p.Backends, netip.AddrPortFrom(netip.MustParseAddr(b), port))
		}
		return vip.Service{Name: "race", VIP: netip.MustParseAddr(vipAddr), Ports: []vip.Port{p}}
	}
	if err := d.Sync(t.Context(), []vip.Service{svc(1)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	d.log = slog.New(slog.DiscardHandler) // thousands of updates follow

	// Raw sockets in the namespace: one syscall per datagram, any
	// source address and port.
	const senders = 2
	socks := make([]int, senders)
	for i := range socks {
		if err := ns.do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			socks[i] = fd
			return err
		}); err != nil {
			t.Fatalf("raw socket: %v", err)
		}
		t.Cleanup(func() { unix.Close(socks[i]) })
	}

	const trial = 5 * time.Second
	type result struct {
		leaks, delivered, sent, dropped, updates int64
	}
	run := func(oneTransaction, update bool) result {
		d.oneTransaction = oneTransaction
		leaks.Store(0)
		delivered.Store(0)
		ctx, cancel := context.WithTimeout(t.Context(), trial)
		defer cancel()
		var (
			wg            sync.WaitGroup
			sent, dropped atomic.Int64
		)
		for g, fd := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent.Add(flood(ctx, fd, byte(g), netip.MustParseAddr(vipAddr), port, &dropped))
			}()
		}
		var updates int64
		counts := []int{2, 3, 2, 1}
		if !update {
			<-ctx.Done()
		}
		for i := 0; ctx.Err() == nil; i++ {
			if err := d.Update(context.Background(), []vip.Service{svc(counts[i%len(counts)])}, nil); err != nil {
				t.Fatalf("Update: %v", err)
			}
			updates++
		}
		wg.Wait()
		// The last datagrams are still on their way to the listeners.
		// Wait until the counts stop moving (no event to wait on).
		for last := int64(-1); last != leaks.Load()+delivered.Load(); {
			last = leaks.Load() + delivered.Load()
			time.Sleep(100 * time.Millisecond)
		}
		if err := d.Update(context.Background(), []vip.Service{svc(1)}, nil); err != nil {
			t.Fatalf("Update: %v", err)
		}
		return result{leaks.Load(), delivered.Load(), sent.Load(), dropped.Load(), updates}
	}
	still := run(false, false)
	one := run(true, true)
	three := run(false, true)
	for _, x := range []struct {
		name string
		r    result
	}{{"no updates (baseline)", still}, {"one transaction per update", one}, {"three transactions per update", three}} {
		t.Logf("%s: %d updates in %v; datagrams: %d sent, %d dropped by netfilter on the way out, %d DNATed to a backend, %d not DNATed (reached the VIP itself)",
			x.name, x.r.updates, trial, x.r.sent, x.r.dropped, x.r.delivered, x.r.leaks)
	}
	if still.leaks != 0 {
		t.Errorf("with no updates, %d datagrams were not DNATed; the test itself leaks", still.leaks)
	}
	if three.leaks != 0 {
		t.Errorf("with three transactions per update, %d datagrams were not DNATed; want none", three.leaks)
	}
	if three.delivered == 0 || one.delivered == 0 {
		t.Errorf("no datagram reached a backend (one transaction: %d, three: %d); the test sends nothing through the VIP", one.delivered, three.delivered)
	}
}

// flood sends UDP datagrams to dst:port on the raw socket fd until ctx
// is done, each from a new source (10.98.g.x, port) so that each is a
// new conntrack entry, at most about 25,000 a second (the entries count
// against the host's conntrack table until they expire). It returns
// how many it sent; dropped counts those netfilter dropped on the way
// out.
func flood(ctx context.Context, fd int, g byte, dst netip.Addr, port uint16, dropped *atomic.Int64) int64 {
	pkt := make([]byte, 20+8+4)
	pkt[0] = 0x45                                         // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt))) // total length
	pkt[8] = 64                                           // TTL
	pkt[9] = unix.IPPROTO_UDP
	d4 := dst.As4()
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[22:], port)
	binary.BigEndian.PutUint16(pkt[24:], 8+4) // UDP length; checksum 0: none
	to := &unix.SockaddrInet4{Addr: d4}
	const perTick, tick = 250, 10 * time.Millisecond // 25,000/s
	var n int64
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for seq := uint32(0); ; {
		for range perTick {
			seq++
			// Source 10.98.g.(seq>>16 & 0xff), port seq: distinct for
			// 16M datagrams per sender.
			pkt[12], pkt[13], pkt[14], pkt[15] = 10, 98, g, byte(seq>>16)
			binary.BigEndian.PutUint16(pkt[20:], uint16(seq))
			binary.BigEndian.PutUint32(pkt[28:], seq)
			switch err := unix.Sendto(fd, pkt, 0, to); {
			case err == nil:
				n++
			case errors.Is(err, unix.EPERM):
				// Netfilter dropped it on the way out (NF_DROP).
				dropped.Add(1)
			case errors.Is(err, unix.ENOBUFS):
			default:
				return n
			}
		}
		select {
		case <-ctx.Done():
			return n
		case <-ticker.C:
		}
	}
}
