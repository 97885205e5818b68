package dns

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"
)

// fakeCatalog is the Catalog boundary: the real catalog lives in
// agent/catalog and the agent adapts it. Set replaces the contents and
// wakes the watchers, as a commit would. It keeps every version, so
// Changes answers with the difference between two of them, and every
// test drives dns's incremental path after the first build.
type fakeCatalog struct {
	mu        sync.Mutex
	index     uint64
	services  []Service
	nodes     []Node
	ch        chan struct{}
	snapshots int
	changes   int
	versions  map[uint64]fakeVersion
	forget    bool // Changes answers "too old", as after tombstones are reaped
}

type fakeVersion struct {
	services []Service
	nodes    []Node
}

func newFakeCatalog(services []Service, nodes []Node) *fakeCatalog {
	return &fakeCatalog{index: 1, services: services, nodes: nodes, ch: make(chan struct{}),
		versions: map[uint64]fakeVersion{1: {services, nodes}}}
}

func (c *fakeCatalog) Snapshot(ws memdb.WatchSet) (uint64, []Service, []Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots++
	ws.Add(c.ch)
	return c.index, c.services, c.nodes
}

func (c *fakeCatalog) Changes(ws memdb.WatchSet, since uint64) (Delta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes++
	ws.Add(c.ch)
	old, ok := c.versions[since]
	if !ok || c.forget {
		return Delta{}, false
	}
	d := Delta{Index: c.index}
	group := func(ss []Service) map[string][]Service {
		m := map[string][]Service{}
		for _, s := range ss {
			k := strings.ToLower(s.Name)
			m[k] = append(m[k], s)
		}
		return m
	}
	before, after := group(old.services), group(c.services)
	for k, now := range after {
		if !reflect.DeepEqual(before[k], now) {
			d.Services = append(d.Services, now...)
		}
	}
	for k, was := range before {
		if _, ok := after[k]; !ok {
			d.Services = append(d.Services, Service{Name: was[0].Name})
		}
	}
	slices.SortStableFunc(d.Services, func(x, y Service) int { return strings.Compare(x.Name, y.Name) })
	if !reflect.DeepEqual(old.nodes, c.nodes) {
		d.Nodes, d.NodesChanged = c.nodes, true
	}
	return d, true
}

// Set replaces the catalog and returns the new index.
func (c *fakeCatalog) Set(services []Service, nodes []Node) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	c.services, c.nodes = services, nodes
	c.versions[c.index] = fakeVersion{services, nodes}
	close(c.ch)
	c.ch = make(chan struct{})
	return c.index
}

func (c *fakeCatalog) Index() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index
}

var ip = netip.MustParseAddr

// testServices is the catalog most tests answer from:
//
//	web: VIP 10.10.0.5; passing on n1 (v1, primary) and n2 (v2), warning
//	     on n3 (v1), passing on n1 with its own address 172.17.0.4:8081
//	     (v1), critical on n2 (port 9999).
//	api: no VIP; passing on n1 (IPv4) and n6 (IPv6).
//	db:  critical only.
//	big: 40 passing instances with their own addresses, for sizes.
//	bad_name: not a DNS label.
func testServices() ([]Service, []Node) {
	nodes := []Node{
		{Name: "n1", Addr: ip("10.0.0.1")},
		{Name: "n2", Addr: ip("10.0.0.2")},
		{Name: "n3", Addr: ip("10.0.0.3")},
		{Name: "n6", Addr: ip("fd00::6")},
		{Name: "bad.node", Addr: ip("10.0.0.9")},
	}
	in := func(node, id string, port int, status string, tags ...string) Instance {
		var addr netip.Addr
		for _, n := range nodes {
			if n.Name == node {
				addr = n.Addr
			}
		}
		return Instance{Node: node, NodeAddr: addr, ServiceID: id, Port: port, Tags: tags, Status: status}
	}
	own := in("n1", "web4", 8081, StatusPassing, "v1")
	own.Address = ip("172.17.0.4")
	services := []Service{
		{Name: "web", VIP: ip("10.10.0.5"), Instances: []Instance{
			in("n2", "web5", 9999, StatusCritical, "v1"),
			in("n3", "web3", 8080, StatusWarning, "v1"),
			own,
			in("n2", "web2", 8080, StatusPassing, "v2"),
			in("n1", "web1", 8080, StatusPassing, "v1", "Primary"),
		}},
		{Name: "api", Instances: []Instance{
			in("n6", "api6", 9000, StatusPassing),
			in("n1", "api1", 9000, StatusPassing),
		}},
		{Name: "db", Instances: []Instance{in("n1", "db1", 5432, StatusCritical)}},
		{Name: "bad_name", Instances: []Instance{in("n1", "x", 1, StatusPassing)}},
	}
	big := Service{Name: "big"}
	for i := range 40 {
		b := in("n2", fmt.Sprintf("big%02d", i), 7000+i, StatusPassing)
		b.Address = netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
		big.Instances = append(big.Instances, b)
	}
	services = append(services, big)
	return services, nodes
}

// testServer is a Server running on 127.0.0.1:0.
type testServer struct {
	*Server
	cat  *fakeCatalog
	addr string // UDP and TCP
}

// newTestServer runs a Server on 127.0.0.1 answering from cat, with the
// Consul alt domain, and returns once it serves cat's current index.
func newTestServer(t testing.TB, cat *fakeCatalog, opts ...func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AltDomain = "consul."
	started := make(chan struct{})
	cfg.NotifyStarted = func() { close(started) }
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg, cat)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-started:
	case err := <-done:
		done <- nil // for the cleanup, which waits on it
		t.Fatalf("Run returned before serving: %v", err)
	}
	if err := s.WaitIndex(ctx, cat.Index()); err != nil {
		t.Fatal(err)
	}
	if cfg.PacketConn == nil && cfg.Listener == nil && s.UDPAddr().String() != s.TCPAddr().String() {
		t.Fatalf("UDP on %s but TCP on %s; with port 0 both should share the port", s.UDPAddr(), s.TCPAddr())
	}
	return &testServer{Server: s, cat: cat, addr: s.UDPAddr().String()}
}

// query is one question with the options a test may want.
type query struct {
	name  string
	qtype uint16
	net   string // "udp" (default) or "tcp"
	edns  uint16 // advertised UDP size; 0: no EDNS
}

// exchange sends q to addr with a real client.
func exchange(t testing.TB, addr string, q query) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(q.name, q.qtype)
	if q.edns != 0 {
		m.SetEdns0(q.edns, false)
	}
	c := &mdns.Client{Net: q.net, Timeout: 5 * time.Second}
	if q.edns == 0 {
		// Read as much as arrives, to see what the server really sent.
		c.UDPSize = mdns.MaxMsgSize
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %s over %s: %v", q.name, mdns.TypeToString[q.qtype], cmpOr(q.net, "udp"), err)
	}
	return r
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// rrText is an RR without its owner and TTL: "A 10.0.0.1",
// "SRV 1 1 8080 n1.node.dc1.cluster.".
func rrText(rr mdns.RR) string {
	h := rr.Header()
	s := strings.TrimPrefix(rr.String(), h.String())
	return mdns.TypeToString[h.Rrtype] + " " + s
}

// section returns rrs as rrText, sorted (rotation changes the order).
func section(rrs []mdns.RR, withOwner bool) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		s := rrText(rr)
		if withOwner {
			s = rr.Header().Name + " " + s
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// recorder is a ResponseWriter that keeps what is written.
type recorder struct {
	tcp     bool
	written [][]byte
}

var (
	recorderTCP = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	recorderUDP = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)

func (w *recorder) LocalAddr() net.Addr { return w.RemoteAddr() }

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return recorderTCP
	}
	return recorderUDP
}

func (w *recorder) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *recorder) Write(b []byte) (int, error) {
	w.written = append(w.written, slices.Clone(b))
	return len(b), nil
}

func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// serveRaw handles one packet as the miekg/dns server does before it
// calls the handler: a header too short is dropped; the header goes
// through accept (drop, FORMERR or NOTIMP); a body that does not unpack
// is FORMERR; the rest goes to serveDNS.
func serveRaw(s *Server, w *recorder, b []byte) {
	if len(b) < 12 {
		return
	}
	dh := mdns.Header{
		Id:      binary.BigEndian.Uint16(b[0:]),
		Bits:    binary.BigEndian.Uint16(b[2:]),
		Qdcount: binary.BigEndian.Uint16(b[4:]),
		Ancount: binary.BigEndian.Uint16(b[6:]),
		Nscount: binary.BigEndian.Uint16(b[8:]),
		Arcount: binary.BigEndian.Uint16(b[10:]),
	}
	hdrOnly := func(code int) {
		m := new(mdns.Msg)
		m.Id = dh.Id
		m.Response = true
		m.Opcode = int(dh.Bits>>11) & 0xF
		m.Rcode = code
		_ = w.WriteMsg(m)
	}
	switch accept(dh) {
	case mdns.MsgIgnore:
		return
	case mdns.MsgReject:
		hdrOnly(mdns.RcodeFormatError)
		return
	case mdns.MsgRejectNotImplemented:
		hdrOnly(mdns.RcodeNotImplemented)
		return
	}
	req := new(mdns.Msg)
	if err := req.Unpack(b); err != nil {
		hdrOnly(mdns.RcodeFormatError)
		return
	}
	s.serveDNS(w, req)
}

// wireLen is the size r had on the wire, where the server compressed it
// when it had to.
func wireLen(r *mdns.Msg) int {
	c := r.Copy()
	c.Compress = true
	return c.Len()
}
