package template

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// HTTPConfig is where an HTTPSource finds its agent.
type HTTPConfig struct {
	// Address of the agent's HTTP API: host:port, http://host:port,
	// https://host:port or unix:///path. Empty: CONSUL_HTTP_ADDR, else
	// 127.0.0.1:8500 (the official client's defaults).
	Address string
	// Token is the ACL token; empty: CONSUL_HTTP_TOKEN.
	Token string
	// ProbeTimeout bounds each of the two probes DialHTTP makes; 0 is 5s.
	ProbeTimeout time.Duration
}

// HTTPSource answers queries over the HTTP API of a Consul-compatible
// agent, with the official client. Against an agent that speaks HTTP/2
// without TLS (h2c), as cairn's does, every blocking query of the runner
// is a stream of one TCP connection (the server's stream limit permitting;
// Go's default is 250 streams, past which a second connection opens).
// Against one that does not (Consul), each blocking query holds an
// HTTP/1.1 connection, as consul-template's do.
type HTTPSource struct {
	client   *api.Client
	protocol string // "h2c", "HTTP/1.1" or "https"
	close    func()

	mu       sync.Mutex
	nodeName string
}

// datacentersInterval is how long a datacenters "blocking query" waits:
// Consul's endpoint does not block, so consul-template asks again after a
// while (its default non-blocking sleep, 15s).
const datacentersInterval = 15 * time.Second

// DialHTTP builds an HTTPSource and finds out, once, how to talk to the
// agent: it asks GET /v1/status/leader over h2c, and when that fails over
// HTTP/1.1. It fails when neither answers, with what to check.
func DialHTTP(ctx context.Context, cfg HTTPConfig) (*HTTPSource, error) {
	timeout := cfg.ProbeTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	base := api.DefaultConfig()
	if cfg.Address != "" {
		base.Address = cfg.Address
	}
	if cfg.Token != "" {
		base.Token = cfg.Token
	}
	addr := base.Address
	if base.Scheme == "https" || strings.HasPrefix(addr, "https://") || strings.HasPrefix(addr, "unix://") {
		// TLS negotiates HTTP/2 by itself; unix sockets keep the
		// client's own transport.
		c, err := api.NewClient(base)
		if err != nil {
			return nil, fmt.Errorf("consul address %q: %w", addr, err)
		}
		s := &HTTPSource{client: c, protocol: "https", close: func() {}}
		if strings.HasPrefix(addr, "unix://") {
			s.protocol = "unix"
		}
		if err := s.probe(ctx, timeout); err != nil {
			return nil, unreachable(addr, err)
		}
		return s, nil
	}

	h2c := &http.Transport{
		Protocols:         new(http.Protocols),
		ForceAttemptHTTP2: true,
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout:   90 * time.Second,
		// One connection carries every stream; pings notice a dead peer
		// while blocking queries sit idle.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	s, err := newHTTPSource(base, h2c, "h2c")
	if err != nil {
		return nil, err
	}
	probeErr := s.probe(ctx, timeout)
	if probeErr == nil {
		return s, nil
	}
	s.close()

	// An HTTP/1.1 server (Consul) answers the HTTP/2 preface with an
	// error or a closed connection: fall back to the client's usual
	// transport, with room for one idle connection per blocking query.
	h1 := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	s, err = newHTTPSource(base, h1, "HTTP/1.1")
	if err != nil {
		return nil, err
	}
	if err := s.probe(ctx, timeout); err != nil {
		s.close()
		return nil, unreachable(addr, errors.Join(err, fmt.Errorf("over h2c: %w", probeErr)))
	}
	return s, nil
}

func newHTTPSource(base *api.Config, tr *http.Transport, protocol string) (*HTTPSource, error) {
	cfg := *base
	cfg.HttpClient = &http.Client{Transport: tr}
	c, err := api.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("consul address %q: %w", base.Address, err)
	}
	return &HTTPSource{client: c, protocol: protocol, close: tr.CloseIdleConnections}, nil
}

func unreachable(addr string, err error) error {
	return fmt.Errorf("cannot reach a Consul-compatible agent at %s: %w; start one (cairn agent -dev) or point -consul-addr (CONSUL_HTTP_ADDR) at it", addr, err)
}

// probe asks for the leader, which every agent answers (even without one).
func (s *HTTPSource) probe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := s.client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	return err
}

// Protocol says how the source talks to its agent: "h2c" (one connection
// for every query), "HTTP/1.1" (one per blocking query), "https" or
// "unix".
func (s *HTTPSource) Protocol() string { return s.protocol }

// Close closes the idle connections.
func (s *HTTPSource) Close() { s.close() }

func (s *HTTPSource) opts(ctx context.Context, q QueryOptions) *api.QueryOptions {
	return (&api.QueryOptions{
		Datacenter: q.Datacenter,
		Near:       q.Near,
		WaitIndex:  q.WaitIndex,
		WaitTime:   q.WaitTime,
	}).WithContext(ctx)
}

func lastIndex(m *api.QueryMeta) uint64 {
	if m == nil {
		return 0
	}
	return m.LastIndex
}

// HealthService implements Source.
func (s *HTTPSource) HealthService(ctx context.Context, service, tag string, passingOnly bool, q QueryOptions) ([]*api.ServiceEntry, uint64, error) {
	e, m, err := s.client.Health().Service(service, tag, passingOnly, s.opts(ctx, q))
	return e, lastIndex(m), err
}

// CatalogServices implements Source.
func (s *HTTPSource) CatalogServices(ctx context.Context, q QueryOptions) (map[string][]string, uint64, error) {
	sv, m, err := s.client.Catalog().Services(s.opts(ctx, q))
	return sv, lastIndex(m), err
}

// CatalogNodes implements Source.
func (s *HTTPSource) CatalogNodes(ctx context.Context, q QueryOptions) ([]*api.Node, uint64, error) {
	n, m, err := s.client.Catalog().Nodes(s.opts(ctx, q))
	return n, lastIndex(m), err
}

// CatalogNode implements Source; an empty node is the agent's own,
// asked for once (GET /v1/agent/self).
func (s *HTTPSource) CatalogNode(ctx context.Context, node string, q QueryOptions) (*api.CatalogNode, uint64, error) {
	if node == "" {
		s.mu.Lock()
		node = s.nodeName
		s.mu.Unlock()
		if node == "" {
			self, err := s.client.Agent().Self()
			if err != nil {
				return nil, 0, fmt.Errorf("find this agent's node name: %w", err)
			}
			node, _ = self["Config"]["NodeName"].(string)
			if node == "" {
				return nil, 0, errors.New("find this agent's node name: /v1/agent/self has no Config.NodeName")
			}
			s.mu.Lock()
			s.nodeName = node
			s.mu.Unlock()
		}
	}
	n, m, err := s.client.Catalog().Node(node, s.opts(ctx, q))
	return n, lastIndex(m), err
}

// KVGet implements Source.
func (s *HTTPSource) KVGet(ctx context.Context, key string, q QueryOptions) (*api.KVPair, uint64, error) {
	p, m, err := s.client.KV().Get(key, s.opts(ctx, q))
	return p, lastIndex(m), err
}

// KVList implements Source.
func (s *HTTPSource) KVList(ctx context.Context, prefix string, q QueryOptions) (api.KVPairs, uint64, error) {
	p, m, err := s.client.KV().List(prefix, s.opts(ctx, q))
	return p, lastIndex(m), err
}

// Datacenters implements Source. The endpoint does not block: with a
// WaitIndex, it waits datacentersInterval (or q.WaitTime, if shorter)
// before asking, and the index is the time of the answer.
func (s *HTTPSource) Datacenters(ctx context.Context, q QueryOptions) ([]string, uint64, error) {
	if q.WaitIndex != 0 {
		wait := datacentersInterval
		if q.WaitTime > 0 {
			wait = min(wait, q.WaitTime)
		}
		if !sleep(ctx, wait) {
			return nil, 0, ctx.Err()
		}
	}
	var out []string
	if _, err := s.client.Raw().Query("/v1/catalog/datacenters", &out, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return nil, 0, err
	}
	return out, uint64(time.Now().UnixNano()), nil
}
