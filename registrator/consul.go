package registrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// consulConfig is api.DefaultConfig (which reads CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_AUTH,
// CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CAPATH,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME) with the
// URI's address on top, as registrator's consul factory does:
//
//	consul://host:port         HTTP (HTTPS if CONSUL_HTTP_SSL=true)
//	consul-tls://host:port     HTTPS; also upstream's CONSUL_TLSCERT / CONSUL_TLSKEY
//	consul-unix:///path/sock   HTTP over a unix socket
//	consulkv://host:port/prefix
//	consulkv-unix:///path/sock:/prefix  (NewConsulKV splits it)
//
// An empty host keeps CONSUL_HTTP_ADDR, else localhost:8500.
func consulConfig(u *url.URL) (*consulapi.Config, error) {
	cfg := consulapi.DefaultConfig()
	switch u.Scheme {
	case "consul-unix":
		if u.Path == "" {
			return nil, fmt.Errorf("registry URI %q has no socket path; use consul-unix:///path/to/consul.sock", u.String())
		}
		cfg.Address = "unix://" + u.Path
		cfg.Scheme = "http"
		return cfg, nil
	case "consul-tls":
		cfg.Scheme = "https"
		if cfg.TLSConfig.CertFile == "" {
			cfg.TLSConfig.CertFile = os.Getenv("CONSUL_TLSCERT")
		}
		if cfg.TLSConfig.KeyFile == "" {
			cfg.TLSConfig.KeyFile = os.Getenv("CONSUL_TLSKEY")
		}
	}
	if u.Host != "" {
		cfg.Address = u.Host
	}
	return cfg, nil
}

// Consul is the consul://, consul-tls:// and consul-unix:// backend: each
// service is registered with the local agent (PUT
// /v1/agent/service/register), the SERVICE_CHECK_* check with it, and
// registrator's own status check as a TTL check it updates.
type Consul struct {
	client *consulapi.Client
	addr   string
}

// NewConsul makes the backend for a consul://, consul-tls:// or
// consul-unix:// URI. It does not connect.
func NewConsul(u *url.URL) (*Consul, error) {
	cfg, err := consulConfig(u)
	if err != nil {
		return nil, err
	}
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w (check CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)", u.Redacted(), err)
	}
	return &Consul{client: c, addr: cfg.Scheme + "://" + strings.TrimPrefix(cfg.Address, "unix://")}, nil
}

// Ping asks the agent for the cluster leader, as registrator does.
func (c *Consul) Ping(ctx context.Context) error {
	var leader string
	_, err := c.client.Raw().Query("/v1/status/leader", &leader, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul at %s: %w", c.addr, err)
	}
	return nil
}

// registration is the agent registration for s.
func registration(s *Service) *consulapi.AgentServiceRegistration {
	reg := &consulapi.AgentServiceRegistration{
		ID: s.ID, Name: s.Name, Port: s.Port, Address: s.Address, Tags: s.Tags, Meta: s.RegistryMeta(),
	}
	var checks consulapi.AgentServiceChecks
	if ch := s.Check; ch != nil {
		checks = append(checks, &consulapi.AgentServiceCheck{
			// Upstream's single check has this ID; keep it when the
			// status check joins, so its state survives.
			CheckID: "service:" + s.ID,
			HTTP:    ch.HTTP, Method: ch.Method, TLSSkipVerify: ch.TLSSkipVerify, TCP: ch.TCP,
			GRPC: ch.GRPC, GRPCUseTLS: ch.GRPCUseTLS, Args: ch.Args, DockerContainerID: ch.DockerID, Shell: ch.Shell,
			TTL: ch.TTL, Interval: ch.Interval, Timeout: ch.Timeout, Status: ch.InitialStatus,
			DeregisterCriticalServiceAfter: ch.DeregisterCriticalServiceAfter,
		})
	}
	if s.Status != StatusNone {
		checks = append(checks, &consulapi.AgentServiceCheck{
			CheckID: StatusCheckID(s.ID), Name: "Docker container state (registrator)",
			TTL: s.StatusTTL.String(), Status: string(s.Status), Notes: s.StatusNote,
		})
	}
	switch len(checks) {
	case 0:
	case 1:
		if s.Status == StatusNone {
			reg.Check = checks[0] // as registrator: the check ID is service:<id>
			break
		}
		fallthrough
	default:
		reg.Checks = checks
	}
	return reg
}

// Register registers s with the agent, replacing a previous registration.
// When the agent refuses the SERVICE_CHECK_* check (400: a Docker check on
// an agent without -enable-script-checks, a kind it does not run), the
// service is registered all the same, with a critical check in its place
// whose notes give the agent's reason: retrying would fail forever, and
// dropping the service would lose the container.
func (c *Consul) Register(ctx context.Context, s *Service) error {
	opts := consulapi.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	err := c.client.Agent().ServiceRegisterOpts(registration(s), opts)
	if se, ok := errors.AsType[consulapi.StatusError](err); ok && se.Code == http.StatusBadRequest && s.Check != nil {
		reg := registration(&Service{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta,
			ExposedPort: s.ExposedPort, PortType: s.PortType, Status: s.Status, StatusNote: s.StatusNote, StatusTTL: s.StatusTTL})
		refused := &consulapi.AgentServiceCheck{
			CheckID: "service:" + s.ID, Name: fmt.Sprintf("Service '%s' check (not run)", s.Name),
			TTL: refusedCheckTTL, Status: consulapi.HealthCritical,
			Notes: "registrator: the agent refused the container's SERVICE_CHECK_* check: " + strings.TrimSpace(se.Body),
		}
		reg.Checks = append(consulapi.AgentServiceChecks{refused}, reg.Checks...)
		if reg.Check != nil {
			reg.Checks = append(reg.Checks, reg.Check)
			reg.Check = nil
		}
		err = c.client.Agent().ServiceRegisterOpts(reg, opts)
	}
	if err != nil {
		return fmt.Errorf("consul at %s: register %s: %w", c.addr, s.ID, err)
	}
	return nil
}

// refusedCheckTTL is the TTL of the check that stands in for a refused
// one: nobody renews it, and it outlives any container, so it stays
// critical with its notes.
const refusedCheckTTL = "87600h"

// Deregister removes s.ID; an unknown ID is not an error.
func (c *Consul) Deregister(ctx context.Context, s *Service) error {
	err := c.client.Agent().ServiceDeregisterOpts(s.ID, (&consulapi.QueryOptions{}).WithContext(ctx))
	if se, ok := errors.AsType[consulapi.StatusError](err); ok && se.Code == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consul at %s: deregister %s: %w", c.addr, s.ID, err)
	}
	return nil
}

// Refresh sets registrator's status check to s.Status, renewing its TTL.
func (c *Consul) Refresh(ctx context.Context, s *Service) error {
	if s.Status == StatusNone {
		return nil
	}
	err := c.client.Agent().UpdateTTLOpts(StatusCheckID(s.ID), s.StatusNote, string(s.Status), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul at %s: update check %s to %s: %w", c.addr, StatusCheckID(s.ID), s.Status, err)
	}
	return nil
}

// Services lists the agent's services.
func (c *Consul) Services(ctx context.Context) ([]*Service, error) {
	m, err := c.client.Agent().ServicesWithFilterOpts("", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul at %s: list agent services: %w", c.addr, err)
	}
	out := make([]*Service, 0, len(m))
	for _, v := range m {
		out = append(out, &Service{ID: v.ID, Name: v.Service, Address: v.Address, Port: v.Port, Tags: v.Tags, Meta: v.Meta})
	}
	return out, nil
}

// ConsulKV is the consulkv:// and consulkv-unix:// backend, registrator's layout: one key
// <prefix>/<service name>/<service ID> holding "address:port" per
// service. A service whose registrator status is critical (unhealthy or
// stopping) has no key, so readers of the prefix only see instances that
// can take traffic.
type ConsulKV struct {
	client *consulapi.Client
	addr   string
	prefix string
}

// NewConsulKV makes the backend for consulkv://host:port/prefix, or for
// upstream's consulkv-unix:///path/to/consul.sock:/prefix (the path holds
// both: the socket before the first ':', the prefix after).
func NewConsulKV(u *url.URL) (*ConsulKV, error) {
	agent, path := u, u.Path
	if u.Scheme == "consulkv-unix" {
		sock, p, ok := strings.Cut(u.Path, ":")
		if !ok || sock == "" {
			return nil, fmt.Errorf("registry URI %q needs a socket path and a key prefix; use consulkv-unix:///path/to/consul.sock:/prefix", u.String())
		}
		agent, path = &url.URL{Scheme: "consul-unix", Path: sock}, p
	}
	prefix := strings.Trim(path, "/")
	if prefix == "" {
		return nil, fmt.Errorf("registry URI %q has no key prefix; use consulkv://host:port/prefix, e.g. consulkv://localhost:8500/services", u.String())
	}
	cfg, err := consulConfig(agent)
	if err != nil {
		return nil, err
	}
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", u.Redacted(), err)
	}
	return &ConsulKV{client: c, addr: cfg.Scheme + "://" + strings.TrimPrefix(cfg.Address, "unix://"), prefix: prefix}, nil
}

func (k *ConsulKV) key(s *Service) string { return k.prefix + "/" + s.Name + "/" + s.ID }

// Ping reads the prefix (registrator's consulkv never checked).
func (k *ConsulKV) Ping(ctx context.Context) error {
	_, _, err := k.client.KV().Get(k.prefix, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul kv at %s: %w", k.addr, err)
	}
	return nil
}

// Register writes s's key, or deletes it while s is critical.
func (k *ConsulKV) Register(ctx context.Context, s *Service) error {
	if s.Status == StatusCritical {
		return k.Deregister(ctx, s)
	}
	v := net.JoinHostPort(s.Address, strconv.Itoa(s.Port))
	if _, err := k.client.KV().Put(&consulapi.KVPair{Key: k.key(s), Value: []byte(v)}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul kv at %s: put %s: %w", k.addr, k.key(s), err)
	}
	return nil
}

// Deregister deletes s's key.
func (k *ConsulKV) Deregister(ctx context.Context, s *Service) error {
	if _, err := k.client.KV().Delete(k.key(s), (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul kv at %s: delete %s: %w", k.addr, k.key(s), err)
	}
	return nil
}

// Refresh writes or deletes the key as s.Status says.
func (k *ConsulKV) Refresh(ctx context.Context, s *Service) error { return k.Register(ctx, s) }

// Services lists the keys under the prefix as services.
func (k *ConsulKV) Services(ctx context.Context) ([]*Service, error) {
	pairs, _, err := k.client.KV().List(k.prefix+"/", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul kv at %s: list %s/: %w", k.addr, k.prefix, err)
	}
	var out []*Service
	for _, p := range pairs {
		name, id, ok := strings.Cut(strings.TrimPrefix(p.Key, k.prefix+"/"), "/")
		if !ok || id == "" {
			continue
		}
		s := &Service{ID: id, Name: name}
		if h, port, err := net.SplitHostPort(string(p.Value)); err == nil {
			s.Address = h
			s.Port, _ = strconv.Atoi(port)
		}
		out = append(out, s)
	}
	return out, nil
}
