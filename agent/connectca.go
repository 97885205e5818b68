package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
)

// connectRoot makes the Connect CA root that /v1/agent/connect/ca/roots
// answers when connect { enabled = true }: a self-signed ECDSA P-256 CA
// certificate with Consul's SPIFFE trust domain URI, made at start and
// kept in memory. cairn signs nothing with it (it runs no service mesh);
// it exists so that tools that wait for Connect's CA start. Each server
// makes its own, so two agents of one cluster answer different roots.
func connectRoot(nodeID, datacenter string) (*httpapi.CARoot, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, "", err
	}
	trustDomain := nodeID + ".consul"
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "cairn CA " + serial.String()},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", fmt.Errorf("connect CA root: %w", err)
	}
	sum := sha1.Sum(der)
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", err
	}
	keyID := sha1.Sum(pub)
	return &httpapi.CARoot{
		ID:             colonHex(sum[:]),
		Name:           "cairn CA Primary Cert (" + datacenter + ")",
		SerialNumber:   serial.Uint64(),
		SigningKeyID:   colonHex(keyID[:]),
		NotBefore:      tmpl.NotBefore,
		NotAfter:       tmpl.NotAfter,
		RootCertPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Active:         true,
		PrivateKeyType: "ec",
		PrivateKeyBits: 256,
		CreateIndex:    1,
		ModifyIndex:    1,
	}, trustDomain, nil
}

// colonHex is b as Consul writes key IDs: hex bytes separated by colons.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}
