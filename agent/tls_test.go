package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/raft"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/tlsconfig"
	"github.com/cairn-dev/cairn/kv"
)

// testCA is a CA in a temp dir that signs certificates into it, with
// `consul tls`'s names and defaults (domain consul, dc1).
type testCA struct {
	t    testing.TB
	dir  string
	pem  tlsconfig.PEM
	file string // the CA certificate
}

func newTestCA(t testing.TB, dir string) *testCA {
	t.Helper()
	p, err := tlsconfig.CreateCA(tlsconfig.CARequest{})
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{t: t, dir: dir, pem: p, file: filepath.Join(dir, fmt.Sprintf("ca-%p.pem", &p))}
	writePEM(t, ca.file, p.Cert)
	return ca
}

// issue writes a certificate of kind to cert/key (overwriting them).
func (ca *testCA) issue(kind tlsconfig.Kind, cert, key string) {
	ca.t.Helper()
	p, err := tlsconfig.CreateCert(ca.pem, tlsconfig.CertRequest{Kind: kind})
	if err != nil {
		ca.t.Fatal(err)
	}
	writePEM(ca.t, cert, p.Cert)
	writePEM(ca.t, key, p.Key)
}

// clientTLS is a client-side config with a certificate of kind from ca
// (nil ca: no certificate) that trusts any server: the attacker's view.
func (ca *testCA) clientTLS(kind tlsconfig.Kind) *tls.Config {
	c := &tls.Config{InsecureSkipVerify: true}
	if ca == nil {
		return c
	}
	p, err := tlsconfig.CreateCert(ca.pem, tlsconfig.CertRequest{Kind: kind})
	if err != nil {
		ca.t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(p.Cert, p.Key)
	if err != nil {
		ca.t.Fatal(err)
	}
	c.Certificates = []tls.Certificate{kp}
	return c
}

func writePEM(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// tlsFiles gives agent name its own certificate files from ca and turns
// on mutual TLS with verify_server_hostname, as Consul's guide does.
func tlsFiles(t *testing.T, ca *testCA, c *Config, kind tlsconfig.Kind) {
	t.Helper()
	cert := filepath.Join(ca.dir, c.NodeName+".pem")
	key := filepath.Join(ca.dir, c.NodeName+"-key.pem")
	ca.issue(kind, cert, key)
	c.TLS = tlsconfig.Config{
		Defaults: tlsconfig.Protocol{
			CAFile: ptr(ca.file), CertFile: ptr(cert), KeyFile: ptr(key),
			VerifyIncoming: ptr(true), VerifyOutgoing: ptr(true),
		},
		InternalRPC: tlsconfig.Protocol{VerifyServerHostname: ptr(true)},
	}
}

// startClusterWith is startCluster (n servers, m clients) with a change
// to each agent's config.
func startClusterWith(t *testing.T, n, m int, tweak func(c *Config)) *testCluster {
	t.Helper()
	var c testCluster
	cfg := clusterConfig(t, "s0", true, n)
	tweak(&cfg)
	first := startAgent(t, cfg)
	c.servers = append(c.servers, first)
	for i := 1; i < n; i++ {
		cfg := clusterConfig(t, fmt.Sprintf("s%d", i), true, n, first.SerfAddr())
		tweak(&cfg)
		c.servers = append(c.servers, startAgent(t, cfg))
	}
	for i := range m {
		cfg := clusterConfig(t, fmt.Sprintf("c%d", i), false, 0, first.SerfAddr())
		tweak(&cfg)
		c.clients = append(c.clients, startAgent(t, cfg))
	}
	for _, a := range c.all() {
		waitLeader(t, a.client)
	}
	return &c
}

// attackerTLS is forward.TLS for a process that never joined: it dials
// with cfg (nil: plain) and accepts nothing.
type attackerTLS struct{ out *tls.Config }

func (a attackerTLS) IncomingRPC() (*tls.Config, bool) { return nil, false }
func (a attackerTLS) OutgoingRPC() *tls.Config {
	if a.out == nil {
		return nil
	}
	return a.out.Clone()
}

// attackerLayer is a raft.StreamLayer that only dials, the way the
// attacker's own Raft transport reaches the server port.
type attackerLayer struct {
	out  *tls.Config
	done chan struct{}
}

func (l attackerLayer) Accept() (net.Conn, error) { <-l.done; return nil, errors.New("closed") }
func (l attackerLayer) Close() error              { return nil }
func (l attackerLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)} }
func (l attackerLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if l.out == nil {
		_, err = c.Write([]byte{0x01})
		return c, err
	}
	if _, err := c.Write([]byte{0x04}); err != nil {
		c.Close()
		return nil, err
	}
	tc := tls.Client(c, l.out)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	_, err = tc.Write([]byte{0x01})
	return tc, err
}

// TestUnjoinedPeerOnServerPort is issue 15's two server-port attacks by
// a process that never joined: (a) a KV write forwarded straight to the
// leader's server port, (b) a flood of Raft RequestVotes in the
// leader's name with ever higher terms, while the cluster takes writes.
// Without TLS both work (the key lands; the servers adopt the attacker's
// term), which is what makes the TLS cases able to fail; with mutual TLS
// neither gets a message read, and every write during the flood succeeds.
func TestUnjoinedPeerOnServerPort(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	foreign := newTestCA(t, dir)
	cases := []struct {
		name     string
		tls      bool
		attacker *tls.Config // nil: plain connections
		succeeds bool
	}{
		{"no TLS, plain attacker", false, nil, true},
		{"mutual TLS, plain attacker", true, nil, false},
		{"mutual TLS, TLS without certificate", true, (*testCA)(nil).clientTLS(""), false},
		{"mutual TLS, certificate of another CA", true, foreign.clientTLS(tlsconfig.KindServer), false},
	}
	plainCluster := startCluster(t, 3, 0)
	// One client agent too: its forwarding pool must dial the servers
	// with TLS.
	tlsCluster := startClusterWith(t, 3, 1, func(c *Config) {
		kind := tlsconfig.KindServer
		if !c.Server {
			kind = tlsconfig.KindClient
		}
		tlsFiles(t, ca, c, kind)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := plainCluster
			if tc.tls {
				c = tlsCluster
			}
			// The cluster works: a write through every agent (once it
			// has settled: a loaded machine may hold an election).
			for _, a := range c.all() {
				eventually(t, "a write through "+a.Config().NodeName, 20*time.Second, func() (bool, string) {
					_, err := a.client.KV().Put(&api.KVPair{Key: "ok/" + a.Config().NodeName, Value: []byte("v")}, nil)
					return err == nil, fmt.Sprint(err)
				})
			}
			leader := leaderOf(t, c)
			key := "pwned/" + strings.ReplaceAll(tc.name, " ", "-")

			// (a) The unjoined writer.
			pool := forward.NewPool(2 * time.Second)
			defer pool.Close()
			pool.UseTLS(attackerTLS{out: tc.attacker})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := pool.Call(ctx, leader.ServerAddr(), &forward.Request{Method: "apply", Op: kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte("x")}})
			cancel()
			p, _, gerr := c.servers[0].client.KV().Get(key, &api.QueryOptions{RequireConsistent: true})
			if gerr != nil {
				t.Fatalf("GET %s: %v", key, gerr)
			}
			if tc.succeeds && (err != nil || p == nil) {
				t.Fatalf("unjoined write without TLS: err %v, key %v; want it to land (else the TLS cases prove nothing)", err, p)
			}
			if !tc.succeeds && (err == nil || p != nil) {
				t.Fatalf("unjoined write with TLS: err %v, key %v; want refused and absent", err, p)
			}

			// (b) The vote flood, while the cluster takes writes.
			cfg, err := leader.client.Operator().RaftGetConfiguration(nil)
			if err != nil {
				t.Fatal(err)
			}
			var leaderID, leaderAddr string
			for _, s := range cfg.Servers {
				if s.Leader {
					leaderID, leaderAddr = s.ID, s.Address
				}
			}
			done := make(chan struct{})
			trans := raft.NewNetworkTransport(attackerLayer{out: tc.attacker, done: done}, 3, 2*time.Second, io.Discard)
			defer func() { close(done); trans.Close() }()
			var adopted, refused atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for _, s := range cfg.Servers {
				wg.Go(func() {
					term := uint64(1_000_000)
					for {
						select {
						case <-stop:
							return
						default:
						}
						term++
						var resp raft.RequestVoteResponse
						err := trans.RequestVote(raft.ServerID(s.ID), raft.ServerAddress(s.Address), &raft.RequestVoteRequest{
							RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leaderID), Addr: []byte(leaderAddr)},
							Term:      term,
						}, &resp)
						switch {
						case err != nil:
							refused.Add(1)
						case resp.Term >= term:
							adopted.Add(1)
						}
					}
				})
			}
			var writes, failed int
			var firstErr error
			until := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(until) {
				writes++
				_, err := c.servers[writes%len(c.servers)].client.KV().Put(&api.KVPair{Key: "during", Value: []byte(fmt.Sprint(writes))}, nil)
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			close(stop)
			wg.Wait()
			t.Logf("vote flood: %d votes adopted, %d refused; %d of %d writes failed (first: %v)", adopted.Load(), refused.Load(), failed, writes, firstErr)
			if tc.succeeds {
				if adopted.Load() == 0 {
					t.Errorf("vote flood without TLS: no server adopted the attacker's term; want the attack to work (else the TLS cases prove nothing)")
				}
				// Let the cluster settle for the next case.
				waitLeader(t, c.servers[0].client)
				return
			}
			if adopted.Load() != 0 || refused.Load() == 0 {
				t.Errorf("vote flood with TLS: %d votes adopted, %d refused; want none read", adopted.Load(), refused.Load())
			}
			if failed != 0 {
				t.Errorf("with TLS, %d of %d writes failed during the vote flood (first: %v); want none", failed, writes, firstErr)
			}
		})
	}
}

// TestHalfOpenHandshakesDoNotStarveServerPort holds more half-open
// connections from one address than the server port lets one address
// hold: the excess is closed at once, and the cluster (other addresses)
// keeps taking writes over TLS.
func TestHalfOpenHandshakesDoNotStarveServerPort(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	c := startClusterWith(t, 3, 0, func(c *Config) { tlsFiles(t, ca, c, tlsconfig.KindServer) })
	leader := leaderOf(t, c)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: time.Second}
	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for range 160 {
		cn, err := d.Dial("tcp", leader.ServerAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
		cn.Write([]byte{0x04}) // TLS, then never a ClientHello
	}
	closedAtOnce := closedWithin(conns, 3*time.Second) // under the handshake timeout
	if closedAtOnce < 160-100 {
		t.Errorf("%d of 160 half-open connections from one address were closed at once; want at least %d (100 may wait)", closedAtOnce, 160-100)
	}
	for i := range 20 {
		if _, err := c.servers[i%3].client.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
			t.Fatalf("write %d while half-open connections are held: %v", i, err)
		}
	}
}

// TestCertificateRotation rotates a TLS cluster to a new CA without
// downtime, as Consul's guide does: first every agent trusts both CAs
// (a bundle), then each gets a certificate of the new CA; every step is
// a reload. Writes never fail, and new connections get the new
// certificate; a broken certificate is refused and the last good one
// keeps serving.
func TestCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	oldCA := newTestCA(t, dir)
	newCA := newTestCA(t, dir)
	bundle := filepath.Join(dir, "bundle.pem")
	writePEM(t, bundle, oldCA.pem.Cert)
	c := startClusterWith(t, 3, 0, func(c *Config) {
		tlsFiles(t, oldCA, c, tlsconfig.KindServer)
		c.TLS.Defaults.CAFile = &bundle
		c.ReloadConfig = func() (Config, error) { return *c, nil }
	})

	stop := make(chan struct{})
	var writes, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			writes.Add(1)
			if _, err := c.servers[i%3].client.KV().Put(&api.KVPair{Key: "rot", Value: []byte("v")}, nil); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	})
	reloadAll := func(step string) {
		t.Helper()
		for _, s := range c.servers {
			if err := s.Reload(context.Background()); err != nil {
				t.Fatalf("%s: reload %s: %v", step, s.Config().NodeName, err)
			}
		}
		// Writes go on after the step (and are counted in failed if not).
		from := writes.Load()
		eventually(t, "writes after "+step, 10*time.Second, func() (bool, string) {
			n := writes.Load()
			return n >= from+5, fmt.Sprintf("%d writes since", n-from)
		})
	}
	reloadAll("start")
	// Step 1: trust both CAs.
	writePEM(t, bundle, append(append([]byte{}, oldCA.pem.Cert...), newCA.pem.Cert...))
	reloadAll("trust both CAs")
	// Step 2: certificates of the new CA.
	for _, s := range c.servers {
		cfg := s.Config()
		newCA.issue(tlsconfig.KindServer, *cfg.TLS.Defaults.CertFile, *cfg.TLS.Defaults.KeyFile)
	}
	reloadAll("new certificates")

	// New connections get the new certificate, on every server.
	client := newCA.clientTLS(tlsconfig.KindClient)
	for _, s := range c.servers {
		if got := serverPortIssuer(t, s.ServerAddr(), client); got != issuerOf(t, newCA) {
			t.Errorf("server port of %s presents a certificate of %q after rotation; want the new CA %q", s.Config().NodeName, got, issuerOf(t, newCA))
		}
	}
	// A new agent that knows only the new CA joins and forwards writes:
	// its connections to the servers are made after the rotation.
	late := clusterConfig(t, "late", false, 0, c.servers[0].SerfAddr())
	tlsFiles(t, newCA, &late, tlsconfig.KindClient)
	lateAgent := startAgent(t, late)
	waitLeader(t, lateAgent.client)
	if _, err := lateAgent.client.KV().Put(&api.KVPair{Key: "after", Value: []byte("v")}, nil); err != nil {
		t.Fatalf("write through an agent that trusts only the new CA: %v", err)
	}

	// A broken certificate is refused; the current one keeps serving.
	s0 := c.servers[0]
	certFile := *s0.Config().TLS.Defaults.CertFile
	good, _ := os.ReadFile(certFile)
	writePEM(t, certFile, []byte("not a certificate"))
	if err := s0.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "cert_file") {
		t.Errorf("reload with a broken certificate = %v; want refused, naming cert_file", err)
	}
	writePEM(t, certFile, good)
	if got := serverPortIssuer(t, s0.ServerAddr(), client); got != issuerOf(t, newCA) {
		t.Errorf("after a refused reload the server port presents %q; want the last good certificate's issuer %q", got, issuerOf(t, newCA))
	}

	close(stop)
	wg.Wait()
	t.Logf("%d writes during the rotation, %d failed", writes.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d writes failed during the rotation (first: %v); want none", failed.Load(), writes.Load(), firstErr.Load())
	}
}

func issuerOf(t *testing.T, ca *testCA) string {
	t.Helper()
	block, _ := pem.Decode(ca.pem.Cert)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.CommonName
}

// serverPortIssuer opens a TLS connection to a server port and returns
// the issuer of the certificate it presents.
func serverPortIssuer(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x04})
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with the server port %s: %v", addr, err)
	}
	return tc.ConnectionState().PeerCertificates[0].Issuer.CommonName
}

// closedWithin counts the connections the other side closes within d,
// reading all of them at once.
func closedWithin(conns []net.Conn, d time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(d))
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// TestConfigFileTLSKeys reads Consul's tls block and the older top-level
// names from config files (HCL and JSON, merged in order) and resolves
// them with Consul's precedence.
func TestConfigFileTLSKeys(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"1.hcl": `
ca_file = "old-ca.pem"
verify_incoming_rpc = true
verify_server_hostname = true
ports { https = 8501 }
tls {
  defaults {
    ca_file   = "new-ca.pem"
    cert_file = "a.pem"
    key_file  = "a-key.pem"
  }
  grpc { verify_incoming = true }
}`,
		"2.json": `{"tls": {"https": {"verify_incoming": false, "tls_min_version": "TLSv1_3"}}, "verify_incoming": true}`,
	}
	cfg := DefaultConfig()
	for _, name := range []string{"1.hcl", "2.json"} {
		p := filepath.Join(dir, name)
		writePEM(t, p, []byte(files[name]))
		if err := LoadConfigFile(&cfg, p); err != nil {
			t.Fatalf("LoadConfigFile(%s): %v", name, err)
		}
	}
	if cfg.Ports.HTTPS != 8501 {
		t.Errorf("ports.https = %d; want 8501", cfg.Ports.HTTPS)
	}
	got, warns, err := cfg.TLS.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := tlsconfig.Resolved{
		InternalRPC: tlsconfig.Settings{CAFile: "new-ca.pem", CertFile: "a.pem", KeyFile: "a-key.pem", VerifyIncoming: true, VerifyOutgoing: true, VerifyServerHostname: true, MinVersion: tls.VersionTLS12},
		HTTPS:       tlsconfig.Settings{CAFile: "new-ca.pem", CertFile: "a.pem", KeyFile: "a-key.pem", MinVersion: tls.VersionTLS13},
	}
	if got.InternalRPC.CAFile != want.InternalRPC.CAFile || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("resolved =\n%+v\nwant\n%+v", got, want)
	}
	if len(warns) != 4 {
		t.Errorf("deprecation warnings = %q; want 4 (ca_file, verify_incoming_rpc, verify_server_hostname, verify_incoming)", warns)
	}
	found := false
	for _, w := range cfg.ConfigWarnings {
		found = found || strings.Contains(w, "tls.grpc")
	}
	if !found {
		t.Errorf("config warnings %q; want tls.grpc named as having no effect", cfg.ConfigWarnings)
	}
}

// TestHTTPSPortWithoutCertificate: Consul starts with ports.https set and
// no certificate (its sdk/testutil sets one on every agent it starts),
// so cairn does too, with the HTTPS API off and the HTTP API serving.
func TestHTTPSPortWithoutCertificate(t *testing.T) {
	cfg := devConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Ports.HTTPS = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := start(t, cfg)
	if a := r.HTTPSAddr(); a != nil {
		t.Errorf("HTTPS listens on %v without a certificate", a)
	}
	if _, err := r.client.Status().Leader(); err != nil {
		t.Errorf("the HTTP API: %v", err)
	}
}
