package tlsconfig

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

// TestResolvePrecedence follows Consul's applyDeprecatedTLSConfig: an old
// top-level key fills its new place only where the tls block leaves it
// unset, and a protocol's own key wins over tls.defaults.
func TestResolvePrecedence(t *testing.T) {
	cases := []struct {
		name      string
		cfg       Config
		rpc, http Settings
		warnings  int
	}{
		{
			name: "empty: nothing verified, TLS 1.2",
			rpc:  Settings{MinVersion: tls.VersionTLS12},
			http: Settings{MinVersion: tls.VersionTLS12},
		},
		{
			name: "defaults reach both",
			cfg:  Config{Defaults: Protocol{CAFile: ptr("ca.pem"), VerifyIncoming: ptr(true), VerifyOutgoing: ptr(true)}},
			rpc:  Settings{CAFile: "ca.pem", VerifyIncoming: true, VerifyOutgoing: true, MinVersion: tls.VersionTLS12},
			http: Settings{CAFile: "ca.pem", VerifyIncoming: true, VerifyOutgoing: true, MinVersion: tls.VersionTLS12},
		},
		{
			name: "https verify_incoming=false over defaults",
			cfg:  Config{Defaults: Protocol{VerifyIncoming: ptr(true)}, HTTPS: Protocol{VerifyIncoming: ptr(false)}},
			rpc:  Settings{VerifyIncoming: true, MinVersion: tls.VersionTLS12},
			http: Settings{MinVersion: tls.VersionTLS12},
		},
		{
			name: "old names move to their new places",
			cfg: Config{Deprecated: Deprecated{CAFile: ptr("old-ca.pem"), VerifyIncomingRPC: ptr(true),
				VerifyIncomingHTTPS: ptr(false), VerifyServerHostname: ptr(true), TLSMinVersion: ptr("tls13")}},
			rpc:      Settings{CAFile: "old-ca.pem", VerifyIncoming: true, VerifyOutgoing: true, VerifyServerHostname: true, MinVersion: tls.VersionTLS13},
			http:     Settings{CAFile: "old-ca.pem", MinVersion: tls.VersionTLS13},
			warnings: 5,
		},
		{
			name: "the tls block wins over an old name",
			cfg: Config{Defaults: Protocol{CAFile: ptr("new-ca.pem"), VerifyIncoming: ptr(false)},
				Deprecated: Deprecated{CAFile: ptr("old-ca.pem"), VerifyIncoming: ptr(true)}},
			rpc:      Settings{CAFile: "new-ca.pem", MinVersion: tls.VersionTLS12},
			http:     Settings{CAFile: "new-ca.pem", MinVersion: tls.VersionTLS12},
			warnings: 2,
		},
		{
			name: "old verify_incoming is overridden per protocol by the tls block",
			cfg:  Config{InternalRPC: Protocol{VerifyIncoming: ptr(false)}, Deprecated: Deprecated{VerifyIncoming: ptr(true)}},
			rpc:  Settings{MinVersion: tls.VersionTLS12},
			http: Settings{VerifyIncoming: true, MinVersion: tls.VersionTLS12}, warnings: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, warns, err := tc.cfg.Resolve()
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.rpc, got.InternalRPC); d != "" {
				t.Errorf("internal_rpc (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.http, got.HTTPS); d != "" {
				t.Errorf("https (-want +got):\n%s", d)
			}
			if len(warns) != tc.warnings {
				t.Errorf("warnings = %q; want %d", warns, tc.warnings)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad version", Config{Defaults: Protocol{TLSMinVersion: ptr("TLSv9")}}, `tls.internal_rpc: tls_min_version "TLSv9" is not one of`},
		{"bad suite", Config{HTTPS: Protocol{TLSCipherSuites: ptr("TLS_RSA_WITH_RC4_128_SHA")}}, `tls.https: tls_cipher_suites: unknown or insecure cipher suite "TLS_RSA_WITH_RC4_128_SHA"`},
		{"cert without key", Config{Defaults: Protocol{CertFile: ptr("a.pem")}}, `cert_file "a.pem" and key_file "" go together`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.cfg.Resolve()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Resolve() = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestManagerRefusesIncompleteSettings(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"verify_incoming without files", Config{Defaults: Protocol{VerifyIncoming: ptr(true)}}, "tls.internal_rpc.verify_incoming (or verify_incoming/verify_incoming_rpc) needs ca_file"},
		{"verify_outgoing without CA", Config{Defaults: Protocol{VerifyOutgoing: ptr(true)}}, "needs ca_file or ca_path to check the servers' certificates"},
		{"missing cert file", Config{Defaults: Protocol{CertFile: ptr("/nonexistent.pem"), KeyFile: ptr("/nonexistent-key.pem")}}, "tls.internal_rpc: load cert_file /nonexistent.pem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := New(tc.cfg, Names{Datacenter: "dc1", Domains: []string{"consul"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
