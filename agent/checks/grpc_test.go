package checks

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcHealthServer serves grpc.health.v1 on 127.0.0.1:0 until the test
// ends; the returned server sets the statuses.
func grpcHealthServer(t *testing.T) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

// A gRPC check asks the standard health service: SERVING is passing,
// NOT_SERVING and an unknown service critical, each with its output; the
// whole server (service "") by default, one service after a "/".
func TestGRPCCheck(t *testing.T) {
	addr, hs := grpcHealthServer(t)
	hs.SetServingStatus("web", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)

	tests := []struct {
		target string
		want   string
	}{
		{addr, `passing "gRPC check ` + addr + `: success"`},
		{addr + "/web", `passing "gRPC check ` + addr + `/web: success"`},
		{addr + "/db", `critical "gRPC check ` + addr + `/db: service \"db\" is NOT_SERVING"`},
		{addr + "/nope", `critical "gRPC check ` + addr + `/nope: rpc error: code = NotFound desc = unknown service"`},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			_, rec := startRunner(t, false, nil, Definition{ID: "g", GRPC: tt.target, Interval: time.Minute, Status: Warning})
			if got, want := rec.waitLines(t, 1), "update g "+tt.want; got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// A gRPC server that is gone, or one that speaks TLS to a check without
// GRPCUseTLS (and the reverse), is critical, saying why.
func TestGRPCCheckFailures(t *testing.T) {
	addr, _ := grpcHealthServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name string
		def  Definition
		want string // in the output
	}{
		{"refused", Definition{GRPC: gone}, "connection refused"},
		{"TLS to a plaintext server", Definition{GRPC: addr, GRPCUseTLS: true, TLSSkipVerify: true}, "gRPC check " + addr + ": rpc error: code = Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.def
			d.ID, d.Interval, d.Timeout, d.Status = "g", time.Minute, 5*time.Second, Passing
			_, rec := startRunner(t, false, nil, d)
			got := rec.waitLines(t, 1)
			if !strings.HasPrefix(got, "update g critical ") || !strings.Contains(got, tt.want) {
				t.Errorf("got %s\nwant critical with %q", got, tt.want)
			}
		})
	}
}
