package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CARequest is `consul tls ca create`'s input.
type CARequest struct {
	Domain     string // default "consul"
	Days       int    // default 1825
	CommonName string // default "Consul Agent CA <serial>"
	Now        time.Time
}

// Kind of certificate, as `consul tls cert create -server|-client|-cli`.
type Kind string

const (
	KindServer Kind = "server"
	KindClient Kind = "client"
	KindCLI    Kind = "cli"
)

// CertRequest is `consul tls cert create`'s input.
type CertRequest struct {
	Kind       Kind
	Datacenter string // default "dc1"
	Domain     string // default "consul"
	Node       string // servers: adds <node>.server.<dc>.<domain>
	DNSNames   []string
	IPs        []net.IP
	Days       int // default 365
	Now        time.Time
}

// PEM is a certificate and its key, PEM-encoded.
type PEM struct{ Cert, Key []byte }

// CAFileNames are the files `consul tls ca create` writes for domain.
func CAFileNames(domain string) (cert, key string) {
	domain = strings.TrimSuffix(or(domain, "consul"), ".")
	return domain + "-agent-ca.pem", domain + "-agent-ca-key.pem"
}

// CreateCA makes a self-signed ECDSA P-256 CA, as `consul tls ca create`.
func CreateCA(r CARequest) (PEM, error) {
	key, sn, now, days, err := newCert(r.Now, r.Days, 1825)
	if err != nil {
		return PEM{}, err
	}
	cn := r.CommonName
	if cn == "" {
		cn = "Consul Agent CA " + sn.String()
	}
	id, err := keyID(&key.PublicKey)
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"HashiCorp Inc."}, Country: []string{"US"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          id,
		AuthorityKeyId:        id,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return PEM{}, fmt.Errorf("create CA certificate: %w", err)
	}
	return encode(der, key)
}

// CertNames are the names a certificate of r's kind gets, as consul's.
func (r CertRequest) names() ([]string, []net.IP, error) {
	dc, domain := or(r.Datacenter, "dc1"), strings.TrimSuffix(or(r.Domain, "consul"), ".")
	var dns []string
	ips := append([]net.IP{net.ParseIP("127.0.0.1")}, r.IPs...)
	switch r.Kind {
	case KindServer:
		dns = append(dns, "server."+dc+"."+domain)
		if r.Node != "" {
			dns = append(dns, r.Node+".server."+dc+"."+domain)
		}
		dns = append(dns, "localhost")
	case KindClient:
		dns = append(dns, "client."+dc+"."+domain, "localhost")
	case KindCLI:
		dns = append(dns, "cli.client."+dc+"."+domain, "localhost")
		ips = nil
	default:
		return nil, nil, fmt.Errorf("certificate kind %q: give one of -server, -client or -cli", r.Kind)
	}
	if r.Node != "" && r.Kind != KindServer {
		return nil, nil, errors.New("-node is only for -server certificates")
	}
	return append(dns, r.DNSNames...), ips, nil
}

// CertFilePrefix is consul's name for r's files without the index:
// <dc>-<kind>-<domain>; the files are <prefix>-<n>.pem and
// <prefix>-<n>-key.pem.
func (r CertRequest) CertFilePrefix() string {
	return fmt.Sprintf("%s-%s-%s", or(r.Datacenter, "dc1"), r.Kind, strings.TrimSuffix(or(r.Domain, "consul"), "."))
}

// CreateCert signs a certificate of r's kind with the CA, as `consul tls
// cert create`: ECDSA P-256, server and client auth, the names of its kind.
func CreateCert(ca PEM, r CertRequest) (PEM, error) {
	caCert, caKey, err := parseCA(ca)
	if err != nil {
		return PEM{}, err
	}
	dns, ips, err := r.names()
	if err != nil {
		return PEM{}, err
	}
	key, sn, now, days, err := newCert(r.Now, r.Days, 365)
	if err != nil {
		return PEM{}, err
	}
	id, err := keyID(&key.PublicKey)
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: dns[0]},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              dns,
		IPAddresses:           ips,
		SubjectKeyId:          id,
		AuthorityKeyId:        caCert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return PEM{}, fmt.Errorf("sign certificate: %w", err)
	}
	return encode(der, key)
}

// WriteCA writes a new CA into dir with consul's file names; it refuses
// to overwrite one. It returns the files written.
func WriteCA(dir string, r CARequest) ([]string, error) {
	certName, keyName := CAFileNames(r.Domain)
	for _, n := range []string{certName, keyName} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return nil, fmt.Errorf("%s already exists; remove it or run in another directory", n)
		}
	}
	p, err := CreateCA(r)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, certName), p.Cert, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, keyName), p.Key, 0o600); err != nil {
		return nil, err
	}
	return []string{certName, keyName}, nil
}

// WriteCert signs a certificate with the CA files caFile/keyFile and
// writes it into dir as <dc>-<kind>-<domain>-<n>.pem (n the first free
// index, as consul does) and its -key.pem.
func WriteCert(dir, caFile, keyFile string, r CertRequest) ([]string, error) {
	c, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w (create one with \"cairn tls ca create\" or name it with -ca)", err)
	}
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA key: %w (name it with -key)", err)
	}
	p, err := CreateCert(PEM{Cert: c, Key: k}, r)
	if err != nil {
		return nil, err
	}
	prefix := r.CertFilePrefix()
	for n := 0; ; n++ {
		certName := fmt.Sprintf("%s-%d.pem", prefix, n)
		keyName := fmt.Sprintf("%s-%d-key.pem", prefix, n)
		if _, err := os.Stat(filepath.Join(dir, certName)); err == nil {
			continue
		}
		if err := writeFile(filepath.Join(dir, certName), p.Cert, 0o644); err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(dir, keyName), p.Key, 0o600); err != nil {
			return nil, err
		}
		return []string{certName, keyName}, nil
	}
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func parseCA(ca PEM) (*x509.Certificate, any, error) {
	cb, _ := pem.Decode(ca.Cert)
	if cb == nil {
		return nil, nil, errors.New("the CA certificate file holds no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("the CA certificate is not a CA (give the file \"cairn tls ca create\" wrote)")
	}
	kb, _ := pem.Decode(ca.Key)
	if kb == nil {
		return nil, nil, errors.New("the CA key file holds no PEM block")
	}
	var key any
	if key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
		if key, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
			return nil, nil, fmt.Errorf("parse the CA key: %w", err)
		}
	}
	return cert, key, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (PEM, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return PEM{}, err
	}
	return PEM{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(b)
	return h[:20], nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// newCert is what every certificate starts from: a P-256 key, a serial
// number, the time it is made (now unless set) and its validity in days
// (defaultDays unless set).
func newCert(now time.Time, days, defaultDays int) (*ecdsa.PrivateKey, *big.Int, time.Time, int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, now, 0, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, now, 0, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	if days <= 0 {
		days = defaultDays
	}
	return key, sn, now, days, nil
}
