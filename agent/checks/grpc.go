package checks

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcTarget splits a GRPC field, "host:port" or "host:port/service",
// as Consul does.
func grpcTarget(v string) (addr, service string) {
	addr, service, _ = strings.Cut(v, "/")
	return addr, service
}

func validateGRPC(v string) error {
	addr, _ := grpcTarget(v)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("GRPC=%q is not host:port or host:port/service (%v); give an address like 127.0.0.1:9090 or 127.0.0.1:9090/my.Service", v, unwrapAddrErr(err))
	}
	return nil
}

// probeGRPC asks c's server once for the health of its service with the
// standard health protocol (grpc.health.v1.Health/Check), like Consul's
// GrpcHealthProbe: SERVING is passing; NOT_SERVING, UNKNOWN, an error or
// no answer within the timeout is critical. Each run opens its own
// connection (and closes it), so a server that no longer accepts
// connections fails its check.
func (r *Runner) probeGRPC(ctx context.Context, c *check) (Status, string) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	addr, service := grpcTarget(c.def.GRPC)
	creds := insecure.NewCredentials()
	if c.def.GRPCUseTLS {
		cfg := &tls.Config{}
		if r.cfg.TLSClientConfig != nil {
			cfg = r.cfg.TLSClientConfig.Clone()
		}
		cfg.InsecureSkipVerify = c.def.TLSSkipVerify
		if c.def.TLSServerName != "" {
			cfg.ServerName = c.def.TLSServerName
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return r.cfg.DialContext(ctx, "tcp", a)
		}),
	)
	if err != nil {
		return Critical, fmt.Sprintf("gRPC check %s: %v", c.def.GRPC, err)
	}
	defer conn.Close()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return Critical, fmt.Sprintf("gRPC check %s: %v", c.def.GRPC, err)
	}
	if st := res.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return Critical, fmt.Sprintf("gRPC check %s: service %q is %s", c.def.GRPC, service, st)
	}
	return Passing, fmt.Sprintf("gRPC check %s: success", c.def.GRPC)
}
