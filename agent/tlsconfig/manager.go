package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// Names are what an outgoing connection to a server checks with
// verify_server_hostname: the certificate must be valid for
// server.<Datacenter>.<domain> for one of Domains (Consul checks its one
// domain; cairn has a domain and the alt domain, "consul" by default, so
// that certificates made by `consul tls` work unchanged).
type Names struct {
	Datacenter string
	Domains    []string // without the trailing dot
}

// Manager holds the current TLS state; every handshake reads it, so a
// reload changes what new connections get without touching a listener.
// Safe for concurrent use.
type Manager struct {
	names Names
	cur   atomic.Pointer[state]
}

type state struct {
	res       Resolved
	rpcServer *tls.Config // nil: no certificate, TLS not offered
	rpcClient *tls.Config // nil: verify_outgoing off
	https     *tls.Config // nil: no certificate for HTTPS
}

// New loads the certificates cfg names. It returns Consul's deprecation
// warnings for the older keys.
func New(cfg Config, names Names) (*Manager, []string, error) {
	m := &Manager{names: names}
	st, warns, err := m.build(cfg)
	if err != nil {
		return nil, warns, err
	}
	m.cur.Store(st)
	return m, warns, nil
}

// Prepare loads the certificates of a new configuration without using
// them; commit switches every later handshake to them. An unreadable or
// invalid certificate is an error and the current ones stay.
func (m *Manager) Prepare(cfg Config) (commit func(), err error) {
	st, _, err := m.build(cfg)
	if err != nil {
		return nil, err
	}
	return func() { m.cur.Store(st) }, nil
}

// Settings are the resolved settings in use.
func (m *Manager) Settings() Resolved { return m.cur.Load().res }

// IncomingRPC is the server side of the server port for a new
// connection: nil when the agent has no certificate (TLS refused);
// required when internal_rpc verify_incoming is on, in which case plain
// connections get nothing and the peer must present a certificate
// signed by the CA.
func (m *Manager) IncomingRPC() (cfg *tls.Config, required bool) {
	st := m.cur.Load()
	return st.rpcServer, st.res.InternalRPC.VerifyIncoming
}

// OutgoingRPC is the client side of a new connection to a server's
// port: nil when verify_outgoing is off (plain connections).
func (m *Manager) OutgoingRPC() *tls.Config {
	c := m.cur.Load().rpcClient
	if c == nil {
		return nil
	}
	return c.Clone()
}

// HTTPSEnabled reports whether HTTPS has a certificate.
func (m *Manager) HTTPSEnabled() bool { return m.cur.Load().https != nil }

// HTTPS is the listener configuration of the HTTPS API: each handshake
// takes the current certificate and client-certificate rule.
func (m *Manager) HTTPS() *tls.Config {
	return &tls.Config{
		NextProtos: []string{"http/1.1", "h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := m.cur.Load().https
			if c == nil {
				return nil, errors.New("HTTPS has no certificate (tls cert_file/key_file were removed); restart without ports.https or set them again")
			}
			return c, nil
		},
	}
}

func (m *Manager) build(cfg Config) (*state, []string, error) {
	res, warns, err := cfg.Resolve()
	if err != nil {
		return nil, warns, err
	}
	st := &state{res: res}
	rpc := res.InternalRPC
	rpcCert, rpcPool, err := load(rpc, "internal_rpc")
	if err != nil {
		return nil, warns, err
	}
	if rpc.VerifyIncoming && (rpcCert == nil || rpcPool == nil) {
		return nil, warns, errors.New("tls.internal_rpc.verify_incoming (or verify_incoming/verify_incoming_rpc) needs ca_file or ca_path and cert_file/key_file: without them no server could talk to another")
	}
	if rpc.VerifyOutgoing && rpcPool == nil {
		return nil, warns, errors.New("tls.internal_rpc.verify_outgoing (or verify_outgoing/verify_server_hostname) needs ca_file or ca_path to check the servers' certificates")
	}
	if rpcCert != nil {
		st.rpcServer = &tls.Config{
			Certificates: []tls.Certificate{*rpcCert},
			ClientCAs:    rpcPool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   rpc.MinVersion,
			CipherSuites: rpc.CipherSuites,
		}
		if rpc.VerifyIncoming {
			st.rpcServer.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if rpc.VerifyOutgoing {
		st.rpcClient = m.clientConfig(rpc, rpcCert, rpcPool)
	}

	hs := res.HTTPS
	httpsCert, httpsPool, err := load(hs, "https")
	if err != nil {
		return nil, warns, err
	}
	if httpsCert != nil {
		if hs.VerifyIncoming && httpsPool == nil {
			return nil, warns, errors.New("tls.https.verify_incoming (or verify_incoming/verify_incoming_https) needs ca_file or ca_path to check client certificates")
		}
		st.https = &tls.Config{
			Certificates: []tls.Certificate{*httpsCert},
			ClientCAs:    httpsPool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   hs.MinVersion,
			CipherSuites: hs.CipherSuites,
			NextProtos:   []string{"http/1.1", "h2"},
		}
		if hs.VerifyIncoming {
			st.https.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return st, warns, nil
}

// clientConfig checks the server's chain against the CA and, with
// verify_server_hostname, its name; without it any certificate of the CA
// is accepted (Consul's verify_outgoing without verify_server_hostname).
func (m *Manager) clientConfig(s Settings, cert *tls.Certificate, pool *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion:   s.MinVersion,
		CipherSuites: s.CipherSuites,
		// The chain is checked below, where the name can be one of
		// several domains.
		InsecureSkipVerify: true,
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	var dnsNames []string
	if s.VerifyServerHostname {
		for _, d := range m.names.Domains {
			dnsNames = append(dnsNames, "server."+m.names.Datacenter+"."+d)
		}
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server presented no certificate")
		}
		opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		leaf := cs.PeerCertificates[0]
		if len(dnsNames) == 0 {
			_, err := leaf.Verify(opts)
			return err
		}
		var first error
		for _, n := range dnsNames {
			opts.DNSName = n
			if _, err := leaf.Verify(opts); err == nil {
				return nil
			} else if first == nil {
				first = err
			}
		}
		return fmt.Errorf("verify_server_hostname: %w", first)
	}
	return c
}

// load reads a protocol's certificate and CA bundle; nil where unset.
func load(s Settings, block string) (*tls.Certificate, *x509.CertPool, error) {
	var cert *tls.Certificate
	if s.CertFile != "" {
		c, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.%s: load cert_file %s and key_file %s: %w", block, s.CertFile, s.KeyFile, err)
		}
		cert = &c
	}
	if s.CAFile == "" && s.CAPath == "" {
		return cert, nil, nil
	}
	pool := x509.NewCertPool()
	var files []string
	if s.CAFile != "" {
		files = append(files, s.CAFile)
	}
	if s.CAPath != "" {
		entries, err := os.ReadDir(s.CAPath)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.%s: read ca_path: %w", block, err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				files = append(files, filepath.Join(s.CAPath, e.Name()))
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.%s: read CA: %w", block, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("tls.%s: %s holds no PEM certificate; ca_file/ca_path must name the CA's certificate (e.g. consul-agent-ca.pem)", block, f)
		}
	}
	return cert, pool, nil
}
