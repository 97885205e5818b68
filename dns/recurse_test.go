package dns

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// upstream is a recursor for tests: a miekg/dns server on 127.0.0.1 (UDP
// and TCP on one port) that records what it was asked, as text.
type upstream struct {
	addr  string
	mu    sync.Mutex
	asked []string // "udp example.org. A"
}

func (u *upstream) log() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.asked...)
}

// startUpstream serves answer on 127.0.0.1. answer returns the rcode and
// answer records for a question.
func startUpstream(t *testing.T, answer func(q mdns.Question) (int, []mdns.RR)) *upstream {
	t.Helper()
	u := &upstream{}
	pc, ln := listenPair(t)
	u.addr = pc.LocalAddr().String()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		q := req.Question[0]
		u.mu.Lock()
		u.asked = append(u.asked, w.RemoteAddr().Network()+" "+q.Name+" "+mdns.TypeToString[q.Qtype])
		u.mu.Unlock()
		m := new(mdns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		m.Rcode, m.Answer = answer(q)
		if w.RemoteAddr().Network() == "udp" {
			m.Truncate(udpLimit(req))
		}
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	return u
}

// listenPair binds UDP and TCP on one port of 127.0.0.1. The kernel
// picks the UDP port; another program may hold it for TCP, so it tries
// again a few times.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
		if attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
}

// exampleOrg answers example.org, big.example.org (100 records, more than
// UDP without EDNS takes), nx.example.org (NXDOMAIN) and PTR names.
func exampleOrg(q mdns.Question) (int, []mdns.RR) {
	a := func(name string, i int) mdns.RR {
		return &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, byte(i))}
	}
	switch strings.ToLower(q.Name) {
	case "example.org.":
		return mdns.RcodeSuccess, []mdns.RR{a(q.Name, 1)}
	case "big.example.org.":
		var rrs []mdns.RR
		for i := range 100 {
			rrs = append(rrs, a(q.Name, i+1))
		}
		return mdns.RcodeSuccess, rrs
	case "9.9.9.10.in-addr.arpa.":
		return mdns.RcodeSuccess, []mdns.RR{&mdns.PTR{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET}, Ptr: "outside.example.org."}}
	}
	return mdns.RcodeNameError, nil
}

func servfail(mdns.Question) (int, []mdns.RR) { return mdns.RcodeServerFailure, nil }

// silent is a recursor that reads queries and never answers; asked
// counts them.
type silentRecursor struct {
	addr  string
	asked atomic.Int32
}

func silent(t *testing.T) *silentRecursor {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentRecursor{addr: pc.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			s.asked.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

func TestRecursion(t *testing.T) {
	good := startUpstream(t, exampleOrg)
	s := newTestServer(t, newFakeCatalog(testServices()), func(c *Config) { c.Recursors = []string{good.addr} })

	t.Run("forwarded", func(t *testing.T) {
		r := exchange(t, s.addr, query{name: "Example.ORG.", qtype: mdns.TypeA})
		if r.Rcode != mdns.RcodeSuccess || !r.RecursionAvailable || r.Authoritative {
			t.Errorf("rcode %s RA %v AA %v, want NOERROR, RA, not AA", mdns.RcodeToString[r.Rcode], r.RecursionAvailable, r.Authoritative)
		}
		if diff := cmp.Diff([]string{"A 192.0.2.1"}, section(r.Answer, false)); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
		if r.Question[0].Name != "Example.ORG." {
			t.Errorf("question %q, want the client's spelling", r.Question[0].Name)
		}
	})
	t.Run("nxdomain passes through", func(t *testing.T) {
		if r := exchange(t, s.addr, query{name: "nx.example.org.", qtype: mdns.TypeA}); r.Rcode != mdns.RcodeNameError {
			t.Errorf("rcode %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
		}
	})
	t.Run("unknown ptr", func(t *testing.T) {
		r := exchange(t, s.addr, query{name: "9.9.9.10.in-addr.arpa.", qtype: mdns.TypePTR})
		if diff := cmp.Diff([]string{"PTR outside.example.org."}, section(r.Answer, false)); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
	})
	t.Run("local names stay local", func(t *testing.T) {
		before := len(good.log())
		exchange(t, s.addr, query{name: "nope.cluster.", qtype: mdns.TypeA})
		exchange(t, s.addr, query{name: "1.0.0.10.in-addr.arpa.", qtype: mdns.TypePTR})
		if after := good.log(); len(after) != before {
			t.Errorf("the recursor was asked %q", after[before:])
		}
	})
	t.Run("truncated upstream: tcp", func(t *testing.T) {
		before := len(good.log())
		r := exchange(t, s.addr, query{name: "big.example.org.", qtype: mdns.TypeA})
		if !r.Truncated || wireLen(r) > 512 || len(r.Answer) == 0 {
			t.Errorf("UDP without EDNS: TC %v, %d bytes, %d answers; want TC within 512 bytes", r.Truncated, wireLen(r), len(r.Answer))
		}
		want := []string{"udp big.example.org. A", "tcp big.example.org. A"}
		if diff := cmp.Diff(want, good.log()[before:]); diff != "" {
			t.Errorf("recursor asked (-want +got):\n%s", diff)
		}
		r = exchange(t, s.addr, query{name: "big.example.org.", qtype: mdns.TypeA, net: "tcp"})
		if r.Truncated || len(r.Answer) != 100 {
			t.Errorf("TCP: TC %v, %d answers; want all 100", r.Truncated, len(r.Answer))
		}
		r = exchange(t, s.addr, query{name: "big.example.org.", qtype: mdns.TypeA, edns: 4096})
		if r.Truncated || len(r.Answer) != 100 || r.IsEdns0() == nil || r.IsEdns0().UDPSize() != ednsSize {
			t.Errorf("UDP with EDNS 4096: TC %v, %d answers, OPT %v; want all 100 and cairn's OPT", r.Truncated, len(r.Answer), r.IsEdns0())
		}
	})
}

func TestRecursorFailover(t *testing.T) {
	bad := startUpstream(t, servfail)
	good := startUpstream(t, exampleOrg)
	quiet := silent(t)
	for _, tt := range []struct {
		name      string
		recursors []string
		rcode     int
	}{
		{"servfail then timeout then good", []string{bad.addr, quiet.addr, good.addr}, mdns.RcodeSuccess},
		{"all fail", []string{bad.addr, quiet.addr}, mdns.RcodeServerFailure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, newFakeCatalog(nil, nil), func(c *Config) {
				// Well under the client's 5s, so the answer proves the
				// silent recursor was given up on.
				c.Recursors, c.RecursorTimeout = tt.recursors, 200*time.Millisecond
			})
			r := exchange(t, s.addr, query{name: "example.org.", qtype: mdns.TypeA})
			if r.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
		})
	}
	if got := fmt.Sprint(bad.log()); got != "[udp example.org. A udp example.org. A]" {
		t.Errorf("the failing recursor was asked %s, want once per query", got)
	}
	if got := quiet.asked.Load(); got != 2 {
		t.Errorf("the silent recursor was asked %d times, want once per query", got)
	}
	if got := fmt.Sprint(good.log()); got != "[udp example.org. A]" {
		t.Errorf("the good recursor was asked %s, want once, after the others failed", got)
	}
}
