package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWriteFilesWithConsulNames: `cairn tls ca create` then `cert
// create` write what `consul tls` writes, with its names and SANs.
func TestWriteFilesWithConsulNames(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteCA(dir, CARequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"consul-agent-ca.pem", "consul-agent-ca-key.pem"}; !slices.Equal(files, want) {
		t.Errorf("WriteCA files = %v; want %v", files, want)
	}
	if _, err := WriteCA(dir, CARequest{}); err == nil || !strings.Contains(err.Error(), "consul-agent-ca.pem already exists") {
		t.Errorf("second WriteCA = %v; want a refusal to overwrite", err)
	}
	ca, key := filepath.Join(dir, files[0]), filepath.Join(dir, files[1])
	cases := []struct {
		req   CertRequest
		files []string
		dns   []string
		ips   []string
	}{
		{CertRequest{Kind: KindServer}, []string{"dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"}, []string{"server.dc1.consul", "localhost"}, []string{"127.0.0.1"}},
		{CertRequest{Kind: KindServer, Node: "s1", DNSNames: []string{"s1.example"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}}, []string{"dc1-server-consul-1.pem", "dc1-server-consul-1-key.pem"},
			[]string{"server.dc1.consul", "s1.server.dc1.consul", "localhost", "s1.example"}, []string{"127.0.0.1", "10.0.0.1"}},
		{CertRequest{Kind: KindClient, Datacenter: "east"}, []string{"east-client-consul-0.pem", "east-client-consul-0-key.pem"}, []string{"client.east.consul", "localhost"}, []string{"127.0.0.1"}},
		{CertRequest{Kind: KindCLI}, []string{"dc1-cli-consul-0.pem", "dc1-cli-consul-0-key.pem"}, []string{"cli.client.dc1.consul", "localhost"}, nil},
	}
	for _, tc := range cases {
		got, err := WriteCert(dir, ca, key, tc.req)
		if err != nil {
			t.Fatalf("WriteCert(%+v): %v", tc.req, err)
		}
		if !slices.Equal(got, tc.files) {
			t.Errorf("WriteCert(%+v) files = %v; want %v", tc.req, got, tc.files)
		}
		b, _ := os.ReadFile(filepath.Join(dir, got[0]))
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(c.DNSNames, tc.dns) || !slices.Equal(ips, tc.ips) {
			t.Errorf("%s: names %v %v; want %v %v", got[0], c.DNSNames, ips, tc.dns, tc.ips)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, got[0]), filepath.Join(dir, got[1])); err != nil {
			t.Errorf("%s: not a usable key pair: %v", got[0], err)
		}
	}
	if _, err := WriteCert(dir, ca, key, CertRequest{Kind: KindClient, Node: "x"}); err == nil || !strings.Contains(err.Error(), "-node is only for -server") {
		t.Errorf("client cert with -node = %v; want refused", err)
	}
}

// TestVerifyServerHostname: with verify_server_hostname an outgoing
// connection accepts only a server certificate (server.dc1.<domain>);
// without it any certificate of the CA.
func TestVerifyServerHostname(t *testing.T) {
	dir := t.TempDir()
	ca, err := CreateCA(CARequest{})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.Cert, 0o600)
	files := func(kind Kind) (string, string) {
		p, err := CreateCert(ca, CertRequest{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		c, k := filepath.Join(dir, string(kind)+".pem"), filepath.Join(dir, string(kind)+"-key.pem")
		os.WriteFile(c, p.Cert, 0o600)
		os.WriteFile(k, p.Key, 0o600)
		return c, k
	}
	sc, sk := files(KindServer)
	cc, ck := files(KindClient)
	cases := []struct {
		name     string
		peer     [2]string // the certificate the server presents
		vsh      bool
		domains  []string
		wantFail string
	}{
		{"server cert, hostname checked", [2]string{sc, sk}, true, []string{"cluster", "consul"}, ""},
		{"client cert posing as server", [2]string{cc, ck}, true, []string{"cluster", "consul"}, "verify_server_hostname"},
		{"client cert, hostname not checked", [2]string{cc, ck}, false, []string{"consul"}, ""},
		{"server cert of another domain", [2]string{sc, sk}, true, []string{"cluster"}, "verify_server_hostname"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, err := New(Config{Defaults: Protocol{CAFile: &caFile, CertFile: &tc.peer[0], KeyFile: &tc.peer[1], VerifyIncoming: ptr(true)}}, Names{})
			if err != nil {
				t.Fatal(err)
			}
			cli, _, err := New(Config{Defaults: Protocol{CAFile: &caFile, CertFile: &cc, KeyFile: &ck, VerifyOutgoing: ptr(true)},
				InternalRPC: Protocol{VerifyServerHostname: &tc.vsh}}, Names{Datacenter: "dc1", Domains: tc.domains})
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			scfg, _ := srv.IncomingRPC()
			go tls.Server(a, scfg).Handshake()
			err = tls.Client(b, cli.OutgoingRPC()).Handshake()
			if tc.wantFail == "" && err != nil {
				t.Errorf("handshake: %v; want success", err)
			}
			if tc.wantFail != "" && (err == nil || !strings.Contains(err.Error(), tc.wantFail)) {
				t.Errorf("handshake: %v; want a failure with %q", err, tc.wantFail)
			}
		})
	}
}
