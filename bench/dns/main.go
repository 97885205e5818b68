// Command dns measures cairn's DNS server against a bare miekg/dns server
// that returns a fixed answer, side by side in one run on 127.0.0.1: the
// same client, the same concurrency and the same query names, alternating
// rounds so both see the same machine. cairn answers from a catalog of
// -services services (3 instances each, a VIP on every other one); the
// queries mix <svc>.cluster A, tasks.<svc>.cluster A and
// <svc>.service.cluster SRV. It reports queries/s, p50, p99 and the
// process's CPU time per query (client included; it varies less than
// queries/s when other programs share the machine) per server, and cairn's
// queries/s as a ratio of the bare server's (goal: 0.8 or more), over all
// rounds and as the median of each round's ratio. With -churn, one service changes that many times a second while
// cairn is measured, so rebuilds compete with queries.
//
// The client sends pre-packed queries and reads raw replies, checking only
// the ID, the rcode and that there is an answer, so that its work does not
// depend on which server it measures.
//
//	go run ./bench/dns -services 10000 -concurrency 16 -duration 5s -rounds 3
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/dns"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dns:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bench/dns", flag.ContinueOnError)
	nServices := fs.Int("services", 10_000, "services in cairn's catalog")
	concurrency := fs.Int("concurrency", 16, "concurrent clients, each with its own UDP socket and one query in flight")
	duration := fs.Duration("duration", 5*time.Second, "length of one measured round per server")
	rounds := fs.Int("rounds", 3, "rounds; each measures the bare server, then cairn")
	churn := fs.Float64("churn", 0, "catalog changes per second while cairn is measured (0: none)")
	cpuprofile := fs.String("cpuprofile", "", "write CPU profiles of the rounds to this file with .bare and .cairn appended")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nServices < 1 || *concurrency < 1 || *duration <= 0 || *rounds < 1 || *churn < 0 {
		return errors.New("-services, -concurrency, -duration and -rounds must be positive, -churn not negative")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cat := newCatalog(*nServices)
	cairnAddr, stopCairn, err := startCairn(ctx, cat)
	if err != nil {
		return err
	}
	defer stopCairn()
	bareAddr, stopBare, err := startBare()
	if err != nil {
		return err
	}
	defer stopBare()

	fmt.Printf("%d services, %d clients, %d rounds of %v per server, GOMAXPROCS=%d, churn %g/s\n",
		*nServices, *concurrency, *rounds, *duration, runtime.GOMAXPROCS(0), *churn)
	fmt.Printf("%-6s %6s %10s %9s %9s %10s %7s\n", "server", "round", "queries/s", "p50", "p99", "cpu/query", "errors")
	queries := makeQueries(*nServices)
	total := map[string]*result{"bare": {}, "cairn": {}}
	var ratios []float64
	for round := 1; round <= *rounds; round++ {
		var bareQPS float64
		for _, srv := range []struct {
			name, addr string
		}{{"bare", bareAddr}, {"cairn", cairnAddr}} {
			// Warm up (sockets, pools, caches) before measuring.
			if _, err := load(srv.addr, queries, *concurrency, *duration/10); err != nil {
				return err
			}
			var stopChurn func()
			if srv.name == "cairn" && *churn > 0 {
				stopChurn = cat.churn(*churn)
			}
			if *cpuprofile != "" {
				if err := startProfile(*cpuprofile+"."+srv.name, round); err != nil {
					return err
				}
			}
			r, err := load(srv.addr, queries, *concurrency, *duration)
			if *cpuprofile != "" {
				pprof.StopCPUProfile()
			}
			if stopChurn != nil {
				stopChurn()
			}
			if err != nil {
				return err
			}
			r.print(srv.name, fmt.Sprint(round))
			total[srv.name].add(r)
			if srv.name == "bare" {
				bareQPS = r.qps()
			} else {
				ratios = append(ratios, r.qps()/bareQPS)
			}
		}
	}
	total["bare"].print("bare", "all")
	total["cairn"].print("cairn", "all")
	slices.Sort(ratios)
	fmt.Printf("cairn/bare queries/s: %.2f over all rounds, %.2f median of rounds (goal >= 0.80)\n",
		total["cairn"].qps()/total["bare"].qps(), ratios[len(ratios)/2])
	fmt.Printf("cairn/bare CPU per query: %.2f\n", total["cairn"].cpuPerQuery().Seconds()/total["bare"].cpuPerQuery().Seconds())
	return nil
}

// startProfile profiles the CPU into file, or file.<round> after the
// first round.
func startProfile(file string, round int) error {
	if round > 1 {
		file = fmt.Sprintf("%s.%d", file, round)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	return pprof.StartCPUProfile(f)
}

// catalog is a fixed catalog that churn can change.
type catalog struct {
	mu       sync.Mutex
	index    uint64
	services []dns.Service
	nodes    []dns.Node
	ch       chan struct{}
	last     int // the service the last churn step changed
}

func newCatalog(n int) *catalog {
	c := &catalog{index: 1, ch: make(chan struct{})}
	for i := range 100 {
		c.nodes = append(c.nodes, dns.Node{Name: fmt.Sprintf("node-%d", i), Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})})
	}
	for i := range n {
		s := dns.Service{Name: fmt.Sprintf("svc-%d", i)}
		if i%2 == 0 {
			s.VIP = netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)})
		}
		for j := range 3 {
			nd := c.nodes[(i+j*7)%len(c.nodes)]
			s.Instances = append(s.Instances, dns.Instance{
				Node: nd.Name, NodeAddr: nd.Addr, ServiceID: fmt.Sprintf("svc-%d-%d", i, j),
				Address: netip.AddrFrom4([4]byte{172, 16 + byte(j), byte(i >> 8), byte(i)}),
				Port:    8000 + j, Tags: []string{fmt.Sprintf("v%d", j)}, Status: dns.StatusPassing,
			})
		}
		c.services = append(c.services, s)
	}
	return c
}

func (c *catalog) Snapshot(ws memdb.WatchSet) (uint64, []dns.Service, []dns.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws.Add(c.ch)
	return c.index, c.services, c.nodes
}

// Changes answers from the last step only; older indexes read a
// snapshot.
func (c *catalog) Changes(ws memdb.WatchSet, since uint64) (dns.Delta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws.Add(c.ch)
	switch since {
	case c.index:
		return dns.Delta{Index: c.index}, true
	case c.index - 1:
		return dns.Delta{Index: c.index, Services: c.services[c.last : c.last+1]}, true
	}
	return dns.Delta{}, false
}

// churn flips one instance's health perRate times a second until stopped.
func (c *catalog) churn(rate float64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			c.mu.Lock()
			// The catalog may not modify what Snapshot returned: copy
			// the slice and the one service that changes.
			services := slices.Clone(c.services)
			k := i % len(services)
			s := services[k]
			s.Instances = slices.Clone(s.Instances)
			if s.Instances[0].Status == dns.StatusPassing {
				s.Instances[0].Status = dns.StatusCritical
			} else {
				s.Instances[0].Status = dns.StatusPassing
			}
			services[k] = s
			c.services = services
			c.last = k
			c.index++
			close(c.ch)
			c.ch = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return func() { close(done); wg.Wait() }
}

// startCairn runs cairn's server on 127.0.0.1 and returns once it
// answers from the catalog.
func startCairn(ctx context.Context, cat *catalog) (string, func(), error) {
	cfg := dns.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	started := make(chan struct{})
	cfg.NotifyStarted = func() { close(started) }
	srv, err := dns.New(cfg, cat)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		cancel()
		return "", nil, fmt.Errorf("cairn: %w", err)
	}
	return srv.UDPAddr().String(), func() { cancel(); <-done }, nil
}

// startBare runs a bare miekg/dns UDP server on 127.0.0.1 that answers
// every query with one fixed A record named as asked.
func startBare() (string, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	fixed := mdns.A{Hdr: mdns.RR_Header{Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(10, 0, 0, 1)}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		a := fixed
		a.Hdr.Name = req.Question[0].Name
		m.Answer = []mdns.RR{&a}
		_ = w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		return "", nil, fmt.Errorf("bare server: %w", err)
	}
	return pc.LocalAddr().String(), func() { _ = srv.Shutdown(); <-done }, nil
}

// makeQueries packs a fixed mix of queries over the services.
func makeQueries(nServices int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	for range 8192 {
		i := rng.IntN(nServices)
		m := new(mdns.Msg)
		switch k := rng.IntN(4); {
		case k < 2:
			m.SetQuestion(fmt.Sprintf("svc-%d.cluster.", i), mdns.TypeA)
		case k == 2:
			m.SetQuestion(fmt.Sprintf("tasks.svc-%d.cluster.", i), mdns.TypeA)
		default:
			m.SetQuestion(fmt.Sprintf("svc-%d.service.cluster.", i), mdns.TypeSRV)
		}
		b, err := m.Pack()
		if err != nil {
			panic(err) // fixed, valid names
		}
		out = append(out, b)
	}
	return out
}

// result is one measurement.
type result struct {
	n       int
	errors  int64
	elapsed time.Duration
	cpu     time.Duration // user+system time of the whole process
	lat     []time.Duration
}

func (r *result) qps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) cpuPerQuery() time.Duration { return r.cpu / time.Duration(max(r.n, 1)) }

func (r *result) add(o *result) {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.lat = append(r.lat, o.lat...)
}

// cpuTime is the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *result) print(server, round string) {
	slices.Sort(r.lat)
	pct := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
	}
	fmt.Printf("%-6s %6s %10.0f %9v %9v %10v %7d\n", server, round, r.qps(), pct(0.50).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), r.cpuPerQuery().Round(100*time.Nanosecond), r.errors)
}

// load sends queries to addr from concurrency clients for d and returns
// what it measured.
func load(addr string, queries [][]byte, concurrency int, d time.Duration) (*result, error) {
	var (
		wg     sync.WaitGroup
		errs   atomic.Int64
		mu     sync.Mutex
		res    = &result{}
		stop   atomic.Bool
		dialed = make(chan error, concurrency)
	)
	start, cpu0 := time.Now(), cpuTime()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			dialed <- err
			if err != nil {
				return
			}
			defer func() { conn.Close() }()
			lat := make([]time.Duration, 0, 1<<16)
			buf := make([]byte, 4096)
			q := make([]byte, 512)
			id := uint16(w << 11)
			for i := w * 997; !stop.Load(); i++ {
				pkt := queries[i%len(queries)]
				q = append(q[:0], pkt...)
				id++
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				if _, err := conn.Write(q); err != nil {
					errs.Add(1)
					continue
				}
				if err := readReply(conn, buf, id); err != nil {
					errs.Add(1)
					// A late reply could be read as the next one's: start
					// over on a new socket.
					conn.Close()
					if conn, err = net.Dial("udp", addr); err != nil {
						return
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	for range concurrency {
		if err := <-dialed; err != nil {
			stop.Store(true)
			wg.Wait()
			return nil, err
		}
	}
	time.Sleep(d) // the measurement's length, not a wait for something to happen
	stop.Store(true)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.cpu = cpuTime() - cpu0
	res.n = len(res.lat)
	res.errors = errs.Load()
	return res, nil
}

// readReply reads until the reply to id arrives and checks it is a
// NOERROR answer with at least one record.
func readReply(conn net.Conn, buf []byte, id uint16) error {
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != id {
			continue // a late reply to an earlier query
		}
		if rcode := buf[3] & 0xF; rcode != mdns.RcodeSuccess {
			return fmt.Errorf("rcode %s", mdns.RcodeToString[int(rcode)])
		}
		if binary.BigEndian.Uint16(buf[6:]) == 0 {
			return errors.New("no answer")
		}
		return nil
	}
}
