package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent"
	"github.com/cairn-dev/cairn/registrator"
)

// httpsAgent makes a CA and certificates with `cairn tls` in a temp dir
// (the current directory for the test), and runs a -dev agent from a
// config file with Consul's tls block, HTTPS on and HTTP off. It returns
// the dir and the HTTPS address.
func httpsAgent(t *testing.T, verifyIncoming bool) (dir, addr string) {
	t.Helper()
	dir = t.TempDir()
	t.Chdir(dir)
	for _, args := range [][]string{
		{"tls", "ca", "create"},
		{"tls", "cert", "create", "-server"},
		{"tls", "cert", "create", "-client"},
		{"tls", "cert", "create", "-cli"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, nil, &out, &errOut); code != 0 {
			t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `
ports {
  http  = -1
  https = %d
  dns   = -1
}
tls {
  defaults {
    ca_file         = "consul-agent-ca.pem"
    cert_file       = "dc1-server-consul-0.pem"
    key_file        = "dc1-server-consul-0-key.pem"
    verify_incoming = %v
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}
`, port, verifyIncoming), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.Ports.SerfLAN, cfg.Ports.Server = 0, 0
	if err := agent.LoadConfigFile(&cfg, conf); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent did not start: %v", err)
	}
	if a.HTTPAddr() != nil {
		t.Errorf("ports { http = -1 }: HTTP still listens on %v", a.HTTPAddr())
	}
	addr = a.HTTPSAddr().String()
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "https", TLSConfig: api.TLSConfig{
		CAFile: filepath.Join(dir, "consul-agent-ca.pem"), CertFile: filepath.Join(dir, "dc1-client-consul-0.pem"), KeyFile: filepath.Join(dir, "dc1-client-consul-0-key.pem"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		leader, err := c.Status().Leader()
		if err == nil && leader != "" {
			return dir, addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader over HTTPS after 15s: %q, %v", leader, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API: the leader is in Raft's goroutines
	}
}

// TestHTTPSClients drives an HTTPS-only agent with verify_incoming the
// ways users do: the official client's TLSConfig, the CLI's CONSUL_*
// variables and flags, cairn template and registrator's consul backend.
func TestHTTPSClients(t *testing.T) {
	dir, addr := httpsAgent(t, true)
	ca := filepath.Join(dir, "consul-agent-ca.pem")
	cert, key := filepath.Join(dir, "dc1-cli-consul-0.pem"), filepath.Join(dir, "dc1-cli-consul-0-key.pem")
	caPath := filepath.Join(dir, "ca")
	os.Mkdir(caPath, 0o700)
	if b, err := os.ReadFile(ca); err != nil || os.WriteFile(filepath.Join(caPath, "ca.pem"), b, 0o600) != nil {
		t.Fatalf("copy the CA into a ca_path dir: %v", err)
	}

	t.Run("official client", func(t *testing.T) {
		c, err := api.NewClient(&api.Config{Address: addr, Scheme: "https", TLSConfig: api.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
			t.Fatalf("PUT over HTTPS: %v", err)
		}
		p, _, err := c.KV().Get("k", nil)
		if err != nil || p == nil || string(p.Value) != "v" {
			t.Fatalf("GET over HTTPS = %v, %v; want v", p, err)
		}
	})
	t.Run("official client without a certificate", func(t *testing.T) {
		c, err := api.NewClient(&api.Config{Address: addr, Scheme: "https", TLSConfig: api.TLSConfig{CAFile: ca}})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.KV().Get("k", nil)
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("GET without a client certificate = %v; want the handshake refused (certificate required)", err)
		}
	})

	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{name: "env https:// address", env: map[string]string{"CONSUL_HTTP_ADDR": "https://" + addr, "CONSUL_CACERT": ca, "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key},
			args: []string{"kv", "get", "k"}, wantOut: "v\n"},
		{name: "env CONSUL_HTTP_SSL", env: map[string]string{"CONSUL_HTTP_ADDR": addr, "CONSUL_HTTP_SSL": "true", "CONSUL_CAPATH": caPath, "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key, "CONSUL_TLS_SERVER_NAME": "server.dc1.consul"},
			args: []string{"kv", "put", "k2", "v2"}, wantOut: "Success! Data written to: k2\n"},
		{name: "flags", args: []string{"kv", "get", "-http-addr", "https://" + addr, "-ca-file", ca, "-client-cert", cert, "-client-key", key, "-tls-server-name", "server.dc1.consul", "k2"}, wantOut: "v2\n"},
		{name: "env CONSUL_HTTP_SSL_VERIFY=false", env: map[string]string{"CONSUL_HTTP_ADDR": "https://" + addr, "CONSUL_HTTP_SSL_VERIFY": "false", "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key},
			args: []string{"kv", "get", "k"}, wantOut: "v\n"},
		{name: "wrong server name", args: []string{"kv", "get", "-http-addr", "https://" + addr, "-ca-file", ca, "-client-cert", cert, "-client-key", key, "-tls-server-name", "evil.example", "k"},
			code: 1, wantErr: "certificate is valid for"},
		{name: "no client certificate", env: map[string]string{"CONSUL_HTTP_ADDR": "https://" + addr, "CONSUL_CACERT": ca},
			args: []string{"kv", "get", "k"}, code: 1, wantErr: "certificate required"},
		{name: "plain HTTP is off", env: map[string]string{"CONSUL_HTTP_ADDR": "http://" + addr},
			args: []string{"kv", "get", "k"}, code: 1, wantErr: "Client sent an HTTP request to an HTTPS server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL_VERIFY"} {
				t.Setenv(k, tc.env[k])
			}
			var out, errOut bytes.Buffer
			code := run(tc.args, nil, &out, &errOut)
			if code != tc.code || out.String() != tc.wantOut || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Errorf("cairn %s = %d, %q, stderr %q; want %d, %q, stderr with %q", strings.Join(tc.args, " "), code, out.String(), errOut.String(), tc.code, tc.wantOut, tc.wantErr)
			}
		})
	}

	env := func(t *testing.T) {
		t.Setenv("CONSUL_HTTP_ADDR", addr)
		t.Setenv("CONSUL_HTTP_SSL", "true")
		t.Setenv("CONSUL_CACERT", ca)
		t.Setenv("CONSUL_CLIENT_CERT", cert)
		t.Setenv("CONSUL_CLIENT_KEY", key)
	}
	t.Run("cairn template", func(t *testing.T) {
		env(t)
		tmpl, out := filepath.Join(dir, "in.ctmpl"), filepath.Join(dir, "out.txt")
		os.WriteFile(tmpl, []byte(`k={{ key "k" }}`), 0o600)
		var stdout, stderr bytes.Buffer
		if code := run([]string{"template", "-template", tmpl + ":" + out, "-once"}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("cairn template over HTTPS: exit %d: %s", code, stderr.String())
		}
		if got, _ := os.ReadFile(out); string(got) != "k=v" {
			t.Errorf("rendered %q; want k=v", got)
		}
	})
	t.Run("registrator consul backend", func(t *testing.T) {
		env(t)
		reg, err := registrator.NewConsul(&url.URL{Scheme: "consul"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Ping(ctx); err != nil {
			t.Fatalf("registrator Ping over HTTPS: %v", err)
		}
		if err := reg.Register(ctx, &registrator.Service{ID: "h:web:80", Name: "web", Port: 80}); err != nil {
			t.Fatalf("registrator Register over HTTPS: %v", err)
		}
		svcs, err := reg.Services(ctx)
		if err != nil || len(svcs) != 1 || svcs[0].Name != "web" {
			t.Fatalf("registrator Services over HTTPS = %v, %v; want web", svcs, err)
		}
	})
}
