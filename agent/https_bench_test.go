package agent

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/tlsconfig"
)

// BenchmarkKVOverHTTPS measures KV GET and PUT through the official
// client over HTTP and over HTTPS (mutual TLS, verify_incoming) against
// one -dev agent serving both, side by side in one run; compare the
// ns/op of the http and https sub-benchmarks (issue 15: HTTPS >= 0.8x).
//
//	go test -run '^$' -bench KVOverHTTPS -benchtime 2s ./agent
func BenchmarkKVOverHTTPS(b *testing.B) {
	dir := b.TempDir()
	ca := newTestCA(b, dir)
	cfg := devConfig()
	cfg.NodeName = "bench"
	cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	ca.issue(tlsconfig.KindServer, cert, key)
	cfg.TLS.Defaults = tlsconfig.Protocol{CAFile: &ca.file, CertFile: &cert, KeyFile: &key, VerifyIncoming: ptr(true)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Ports.HTTPS = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	a, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Started():
	case err := <-done:
		b.Fatalf("agent did not start: %v", err)
	}
	plain, err := api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
	if err != nil {
		b.Fatal(err)
	}
	clientCert, clientKey := filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli-key.pem")
	ca.issue(tlsconfig.KindCLI, clientCert, clientKey)
	https, err := api.NewClient(&api.Config{Address: a.HTTPSAddr().String(), Scheme: "https",
		TLSConfig: api.TLSConfig{CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey}})
	if err != nil {
		b.Fatal(err)
	}
	// The first write waits for the dev agent's leadership (the hold
	// time covers it).
	for _, c := range []*api.Client{plain, https} {
		if _, err := c.KV().Put(&api.KVPair{Key: "bench", Value: make([]byte, 128)}, nil); err != nil {
			b.Fatal(err)
		}
	}
	v := make([]byte, 128)
	do := func(b *testing.B, c *api.Client, op string) {
		var err error
		if op == "get" {
			_, _, err = c.KV().Get("bench", nil)
		} else {
			_, err = c.KV().Put(&api.KVPair{Key: "bench", Value: v}, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"get", "put"} {
		// Alternating one HTTP and one HTTPS request, so both see the
		// same machine load; https-vs-http is HTTPS's throughput as a
		// fraction of HTTP's (the goal is >= 0.8).
		b.Run(op, func(b *testing.B) {
			var tPlain, tSecure time.Duration
			for b.Loop() {
				t0 := time.Now()
				do(b, plain, op)
				t1 := time.Now()
				do(b, https, op)
				tPlain += t1.Sub(t0)
				tSecure += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(tPlain.Nanoseconds())/n, "http-ns/op")
			b.ReportMetric(float64(tSecure.Nanoseconds())/n, "https-ns/op")
			b.ReportMetric(float64(tPlain)/float64(tSecure), "https-vs-http")
		})
	}
}
