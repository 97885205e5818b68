// Package tlsconfig owns the agent's TLS settings: Consul's tls { defaults
// internal_rpc https } keys and their older top-level names, resolved with
// Consul's precedence, and the certificates they name. A Manager serves
// the current certificates to every new handshake (server port, HTTPS,
// outgoing Raft and forwarded requests) and swaps them on reload without
// closing a listener. It also creates CAs and certificates the way
// `consul tls` does (certs.go). It never imports agent.
package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// Protocol is one block of Consul's tls stanza (defaults, internal_rpc,
// https). Pointers tell "not set" (inherit from defaults) from false.
// The hcl tags are Consul's key names, for the agent's config files.
type Protocol struct {
	CAFile               *string `hcl:"ca_file"`
	CAPath               *string `hcl:"ca_path"`
	CertFile             *string `hcl:"cert_file"`
	KeyFile              *string `hcl:"key_file"`
	VerifyIncoming       *bool   `hcl:"verify_incoming"`
	VerifyOutgoing       *bool   `hcl:"verify_outgoing"`
	VerifyServerHostname *bool   `hcl:"verify_server_hostname"` // internal_rpc only
	TLSMinVersion        *string `hcl:"tls_min_version"`
	TLSCipherSuites      *string `hcl:"tls_cipher_suites"`
}

// Config is Consul's tls stanza plus the deprecated top-level keys.
type Config struct {
	Defaults    Protocol
	InternalRPC Protocol
	HTTPS       Protocol
	Deprecated  Deprecated
}

// Deprecated holds the top-level TLS keys Consul had before 1.12
// (ca_file, verify_incoming_rpc, ...).
type Deprecated struct {
	CAFile, CAPath, CertFile, KeyFile   *string
	TLSMinVersion, TLSCipherSuites      *string
	VerifyIncoming, VerifyIncomingRPC   *bool
	VerifyIncomingHTTPS, VerifyOutgoing *bool
	VerifyServerHostname                *bool
}

// Settings are one protocol's resolved TLS settings.
type Settings struct {
	CAFile, CAPath, CertFile, KeyFile string
	VerifyIncoming                    bool
	VerifyOutgoing                    bool
	VerifyServerHostname              bool
	MinVersion                        uint16
	CipherSuites                      []uint16
}

// Resolved are the settings of the server port and of HTTPS.
type Resolved struct {
	InternalRPC Settings
	HTTPS       Settings
}

// Resolve applies Consul's precedence: a deprecated top-level key fills
// the tls block it moved to only where that block leaves the key unset
// (ca_file -> tls.defaults.ca_file, verify_incoming_rpc ->
// tls.internal_rpc.verify_incoming, verify_incoming_https ->
// tls.https.verify_incoming, verify_server_hostname ->
// tls.internal_rpc.verify_server_hostname); then each protocol's own key
// wins over tls.defaults. As in Consul, verify_server_hostname implies
// verify_outgoing. The warnings name each deprecated key used.
func (c Config) Resolve() (Resolved, []string, error) {
	var warns []string
	d, rpc, https := c.Defaults, c.InternalRPC, c.HTTPS
	dep := c.Deprecated
	fill := func(dst **string, v *string, old, repl string) {
		if v == nil {
			return
		}
		if *dst == nil {
			*dst = v
		}
		warns = append(warns, fmt.Sprintf("The '%s' field is deprecated. Use the '%s' field instead.", old, repl))
	}
	fillB := func(dst **bool, v *bool, old, repl string) {
		if v == nil {
			return
		}
		if *dst == nil {
			*dst = v
		}
		warns = append(warns, fmt.Sprintf("The '%s' field is deprecated. Use the '%s' field instead.", old, repl))
	}
	fill(&d.CAFile, dep.CAFile, "ca_file", "tls.defaults.ca_file")
	fill(&d.CAPath, dep.CAPath, "ca_path", "tls.defaults.ca_path")
	fill(&d.CertFile, dep.CertFile, "cert_file", "tls.defaults.cert_file")
	fill(&d.KeyFile, dep.KeyFile, "key_file", "tls.defaults.key_file")
	fill(&d.TLSMinVersion, dep.TLSMinVersion, "tls_min_version", "tls.defaults.tls_min_version")
	fill(&d.TLSCipherSuites, dep.TLSCipherSuites, "tls_cipher_suites", "tls.defaults.tls_cipher_suites")
	fillB(&d.VerifyIncoming, dep.VerifyIncoming, "verify_incoming", "tls.defaults.verify_incoming")
	fillB(&https.VerifyIncoming, dep.VerifyIncomingHTTPS, "verify_incoming_https", "tls.https.verify_incoming")
	fillB(&rpc.VerifyIncoming, dep.VerifyIncomingRPC, "verify_incoming_rpc", "tls.internal_rpc.verify_incoming")
	fillB(&d.VerifyOutgoing, dep.VerifyOutgoing, "verify_outgoing", "tls.defaults.verify_outgoing")
	fillB(&rpc.VerifyServerHostname, dep.VerifyServerHostname, "verify_server_hostname", "tls.internal_rpc.verify_server_hostname")

	var r Resolved
	var err error
	if r.InternalRPC, err = merge(d, rpc, "internal_rpc"); err != nil {
		return r, warns, err
	}
	if r.InternalRPC.VerifyServerHostname {
		r.InternalRPC.VerifyOutgoing = true
	}
	if r.HTTPS, err = merge(d, https, "https"); err != nil {
		return r, warns, err
	}
	r.HTTPS.VerifyServerHostname = false
	return r, warns, nil
}

func merge(d, p Protocol, block string) (Settings, error) {
	str := func(own, def *string) string {
		if own != nil {
			return *own
		}
		if def != nil {
			return *def
		}
		return ""
	}
	bl := func(own, def *bool) bool {
		if own != nil {
			return *own
		}
		return def != nil && *def
	}
	s := Settings{
		CAFile:               str(p.CAFile, d.CAFile),
		CAPath:               str(p.CAPath, d.CAPath),
		CertFile:             str(p.CertFile, d.CertFile),
		KeyFile:              str(p.KeyFile, d.KeyFile),
		VerifyIncoming:       bl(p.VerifyIncoming, d.VerifyIncoming),
		VerifyOutgoing:       bl(p.VerifyOutgoing, d.VerifyOutgoing),
		VerifyServerHostname: bl(p.VerifyServerHostname, d.VerifyServerHostname),
	}
	var err error
	if s.MinVersion, err = minVersion(str(p.TLSMinVersion, d.TLSMinVersion)); err != nil {
		return s, fmt.Errorf("tls.%s: %w", block, err)
	}
	if s.CipherSuites, err = cipherSuites(str(p.TLSCipherSuites, d.TLSCipherSuites)); err != nil {
		return s, fmt.Errorf("tls.%s: %w", block, err)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return s, fmt.Errorf("tls.%s: cert_file %q and key_file %q go together; set both or neither", block, s.CertFile, s.KeyFile)
	}
	return s, nil
}

// minVersion reads Consul's tls_min_version ("TLSv1_2"; the pre-1.12
// "tls12" form too). Empty is Consul's default, TLS 1.2.
func minVersion(v string) (uint16, error) {
	switch v {
	case "", "TLSv1_2", "tls12":
		return tls.VersionTLS12, nil
	case "TLSv1_3", "tls13":
		return tls.VersionTLS13, nil
	case "TLSv1_0", "tls10":
		return tls.VersionTLS10, nil
	case "TLSv1_1", "tls11":
		return tls.VersionTLS11, nil
	}
	return 0, fmt.Errorf("tls_min_version %q is not one of TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3", v)
}

// cipherSuites reads Consul's comma-separated tls_cipher_suites (Go's
// names, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); empty: Go's
// defaults.
func cipherSuites(v string) ([]uint16, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	byName := map[string]uint16{}
	for _, s := range tls.CipherSuites() {
		byName[s.Name] = s.ID
	}
	var ids []uint16
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		id, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("tls_cipher_suites: unknown or insecure cipher suite %q; use Go's names, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
