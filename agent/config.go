package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cairn-dev/cairn/agent/tlsconfig"
	"github.com/cairn-dev/cairn/dns"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Config is everything `cairn agent` takes. cmd/cairn fills it from
// DefaultConfig, then config files (LoadConfigFile, LoadConfigDir), then
// flags. Field comments name the flag and the config-file key; both are
// Consul's (https://developer.hashicorp.com/consul/docs/agent/config).
type Config struct {
	// NodeName (-node, node_name) names this node in the cluster.
	// Empty means the host name.
	NodeName string
	// NodeID (-node-id, node_id) is the node's UUID and its Raft ID. Empty
	// means the one stored in <DataDir>/node-id, or a new one written
	// there, so it stays the same across restarts (as Consul does).
	NodeID string
	// Datacenter (-datacenter, datacenter), "dc1" by default.
	Datacenter string
	// DataDir (-data-dir, data_dir) holds the node ID and the Raft state.
	// Required unless Dev is set.
	DataDir string
	// Dev (-dev) runs a single server with a temporary data dir that is
	// removed on exit, short Raft timeouts, and every address on
	// 127.0.0.1.
	Dev bool
	// Server (-server, server) makes this agent a member of the Raft group.
	Server bool
	// BootstrapExpect (-bootstrap-expect, bootstrap_expect) is how many
	// servers to wait for before forming the Raft group and electing the
	// first leader. 0 on a server means it joins an existing group.
	BootstrapExpect int

	// BindAddr (-bind, bind_addr) is the IP the cluster-facing listeners
	// (server RPC/Raft, gossip) bind to. Empty means 0.0.0.0, or
	// 127.0.0.1 under Dev.
	BindAddr string
	// AdvertiseAddr (-advertise, advertise_addr) is the IP other nodes
	// reach this one on. Empty means BindAddr, or this host's only
	// private IPv4 address when BindAddr is 0.0.0.0.
	AdvertiseAddr string
	// ClientAddr (-client, client_addr) is the IP the HTTP API and DNS
	// bind to, 127.0.0.1 by default.
	ClientAddr string
	// Ports (-http-port, -dns-port, -serf-lan-port, -server-port; ports {}).
	Ports Ports

	// Join (-join, start_join) are agents to join at start; failing to
	// reach all of them stops the agent. RetryJoin (-retry-join,
	// retry_join) are tried in the background with backoff until one
	// answers.
	Join      []string
	RetryJoin []string
	// Encrypt (-encrypt, encrypt) is the base64 gossip encryption key
	// (16, 24 or 32 bytes; make one with `cairn keygen`).
	Encrypt string
	// ReconnectTimeout (reconnect_timeout) is how long a failed member is
	// kept before it is reaped, and a failed server before the leader
	// removes it from the Raft group (default 72h, Consul's).
	ReconnectTimeout time.Duration
	// LeaveOnTerminate (leave_on_terminate) makes a stopping agent leave
	// the cluster gracefully, so others see it "left" and a leaving server
	// is removed from the Raft group. Default true, for servers too
	// (Consul defaults servers to false); false makes a stop look like a
	// failure, as after kill -9.
	LeaveOnTerminate bool
	// EnableScriptChecks (-enable-script-checks, enable_script_checks)
	// allows checks that run a program (ScriptArgs). Off by default, as
	// in Consul: anyone who can register a check could run anything.
	EnableScriptChecks bool
	// EnableLocalScriptChecks (-enable-local-script-checks,
	// enable_local_script_checks) allows script checks defined in config
	// files only, not those registered over the HTTP API.
	EnableLocalScriptChecks bool
	// EnableRemoteExec is Consul's disable_remote_exec = false: this
	// agent runs the commands `consul exec` / `cairn exec` send it
	// (agent/rexec). Off by default, as in Consul: anyone who can write
	// the KV store and fire events could run anything here.
	EnableRemoteExec bool
	// NodeMeta (-node-meta key:value, node_meta) is this node's Node.Meta,
	// besides Consul's own keys (consul-network-segment, consul-version).
	NodeMeta map[string]string
	// Services and Checks are the service and check definitions of the
	// config files (service {}, services [], check {}, checks []), in the
	// JSON of Consul's agent API; they are registered at start.
	Services []json.RawMessage
	Checks   []json.RawMessage
	// ConnectEnabled (connect { enabled = true }) makes the agent answer
	// the Connect CA roots endpoints with a root of its own. cairn runs
	// no proxies and signs no leaf certificates.
	ConnectEnabled bool
	// ConfigWarnings are about the config files' keys that have no effect in cairn;
	// New logs each once.
	ConfigWarnings []string
	// Fast shortens Raft and gossip timings for agents that share one
	// machine (-dev sets it; tests do). Not a flag: never across networks.
	Fast bool
	// Domain (-domain, domain) is the DNS domain, "cluster." by default.
	Domain string
	// AltDomain (-alt-domain, alt_domain) answers the same names under a
	// second domain, "consul." by default so that clients written for
	// Consul find services; empty turns it off.
	AltDomain string
	// Recursors (-recursor, recursors) answer DNS names outside Domain.
	Recursors []string
	// DNS (dns_config { service_ttl node_ttl only_passing }) tunes the
	// answers.
	DNS DNSConfig

	// Templates (-template, repeatable) are consul-template templates
	// rendered in-process from this agent's catalog and KV store,
	// "source[:destination[:command]]". TemplateCheck (-template-check)
	// validates each of their results before it stays; TemplateWait
	// (-template-wait) is the quiescence "min[:max]" of every template;
	// TemplateConfigs (-template-config, repeatable) are consul-template
	// config files whose template {} blocks are rendered too.
	Templates       []string
	TemplateCheck   string
	TemplateWait    string
	TemplateConfigs []string
	// LogLevel (-log-level, log_level): trace, debug, info, warn or err.
	LogLevel string
	// LogJSON (-log-json) writes the log as JSON lines.
	LogJSON bool
	// ReloadConfig, when set, reads the configuration again for Reload
	// (SIGHUP, PUT /v1/agent/reload): cmd/cairn re-parses the same
	// flags and config files. Not a flag.
	ReloadConfig func() (Config, error)
	// DisableMetrics (-disable-metrics) turns the agent's metrics off:
	// nothing is recorded and /v1/agent/metrics answers 501.
	DisableMetrics bool
	// EnableDebug (enable_debug; on under Dev) serves Go's CPU profile
	// and execution trace at /debug/pprof/profile and /debug/pprof/trace,
	// as Consul's does: each costs the agent CPU for as long as it runs,
	// so an agent serves them only when asked to, or to a token with
	// operator read when ACLs are on.
	EnableDebug bool

	// Docker (-docker) registers this host's Docker containers and Swarm
	// tasks as services of this agent, by registrator's rules (package
	// registrator): IDs <node name>:<container>:<port>, published ports
	// at the advertise address. DockerHost (-docker-host) is the engine
	// ("" means $DOCKER_HOST, else unix:///var/run/docker.sock).
	// DockerOptions are registrator's options (-docker-internal, ...).
	// In config files: docker { enabled host internal ... }.
	Docker        bool
	DockerHost    string
	DockerOptions DockerOptions

	// VIPCIDR (-vip-cidr, vip_cidr) is the range service VIPs come from,
	// e.g. 10.200.0.0/16. Empty: no VIPs at all (DNS answers instances).
	// Every agent of a cluster needs the same range: the servers
	// allocate from it, the others use it to turn VIPs on.
	VIPCIDR string
	// VIPDataplane (-vip-dataplane, vip_dataplane) programs this host's
	// kernel: auto (the default with -vip-cidr: ipvs when the kernel has
	// it, else nftables, else none), ipvs, nftables, or none (DNS and
	// HTTP only; removes the rules an earlier run left).
	VIPDataplane string
	// VIPScheduler (-vip-scheduler, vip_scheduler) is the IPVS scheduler,
	// rr by default.
	VIPScheduler string
	// VIPGrace (vip_grace) is how long a VIP outlives its service's last
	// instance, so a redeploy keeps it (default 1h). Not a flag.
	VIPGrace time.Duration

	// ShutdownTimeout bounds how long a graceful stop waits for HTTP
	// requests in flight (default 5s). Not a flag.
	ShutdownTimeout time.Duration

	// RPCHoldTimeout (-rpc-hold-timeout, performance.rpc_hold_timeout)
	// is how long a KV or session request waits for a leader during an
	// election, or for a server that stopped answering, before it fails
	// (default 7s, Consul's).
	RPCHoldTimeout time.Duration
	// TLS is Consul's tls { defaults internal_rpc https } block and the
	// older top-level keys (ca_file, verify_incoming, ...); see
	// agent/tlsconfig and docs/tls.md.
	TLS tlsconfig.Config

	// Limits are the agent's resource limits (Consul's limits block).
	Limits Limits
	// RaftLogStore (raft_logstore.backend) is the Raft log of a new
	// server data dir: "wal" (the default) or "boltdb".
	RaftLogStore string
	// ACL is Consul's acl block (agent/acl.go).
	ACL ACLConfig
}

// Limits bound what one client can hold of the agent (limits { }).
type Limits struct {
	// HTTPMaxConnsPerClient (http_max_conns_per_client) is how many HTTP
	// connections one client IP may hold open (default 200, Consul's);
	// more are answered 429 and closed.
	HTTPMaxConnsPerClient int
	// MaxBlockingQueries (max_blocking_queries, cairn's) is how many
	// blocking KV and session queries a server parks at once (default
	// 16384); more are answered 429.
	MaxBlockingQueries int
}

// DNSConfig is Consul's dns_config, in the part cairn reads.
type DNSConfig struct {
	// ServiceTTL and NodeTTL (service_ttl, node_ttl) are the TTLs of
	// service and node records, whole seconds; 0 by default, as in Consul.
	ServiceTTL time.Duration
	NodeTTL    time.Duration
	// OnlyPassing (only_passing) answers passing instances only; when
	// false, warning ones too. True by default (Consul defaults to false).
	OnlyPassing bool
}

// Ports are the agent's ports, Consul's defaults. For HTTP and DNS, -1
// disables the listener (as in Consul); 0 anywhere picks a free port,
// which tests use and (*Agent).HTTPAddr reports.
type Ports struct {
	HTTP    int
	HTTPS   int // -1 (Consul's default): no HTTPS listener
	DNS     int
	SerfLAN int
	Server  int
}

// Default values, Consul's.
const (
	DefaultDatacenter = "dc1"
	DefaultDomain     = "cluster."
	DefaultAltDomain  = "consul."
	DefaultClientAddr = "127.0.0.1"
	DefaultLogLevel   = "info"
	DefaultHTTPPort   = 8500
	DefaultDNSPort    = 8600
	DefaultSerfLAN    = 8301
	DefaultServerPort = 8300
)

// DefaultConfig returns the defaults of `cairn agent` with no flags.
func DefaultConfig() Config {
	return Config{
		Datacenter: DefaultDatacenter,
		ClientAddr: DefaultClientAddr,
		Domain:     DefaultDomain,
		AltDomain:  DefaultAltDomain,
		DNS:        DNSConfig{OnlyPassing: true},
		LogLevel:   DefaultLogLevel,
		Ports: Ports{
			HTTP:    DefaultHTTPPort,
			HTTPS:   -1,
			DNS:     DefaultDNSPort,
			SerfLAN: DefaultSerfLAN,
			Server:  DefaultServerPort,
		},
		ShutdownTimeout:  5 * time.Second,
		ReconnectTimeout: 72 * time.Hour,
		RPCHoldTimeout:   7 * time.Second,
		Limits:           Limits{HTTPMaxConnsPerClient: 200, MaxBlockingQueries: 16384},
		VIPScheduler:     "rr",
		LeaveOnTerminate: true,
	}
}

var datacenterRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Validate reports the first setting that cannot work, naming the flag,
// the value given and what to do about it.
func (c Config) Validate() error {
	if c.Dev {
		if c.BootstrapExpect != 0 {
			return fmt.Errorf("-bootstrap-expect=%d conflicts with -dev (a single server); drop one of them", c.BootstrapExpect)
		}
		if c.DataDir != "" {
			return fmt.Errorf("-data-dir=%s conflicts with -dev, which uses a temporary data dir removed on exit; drop one of them", c.DataDir)
		}
	} else {
		if c.DataDir == "" {
			return errors.New("-data-dir is required unless -dev is set; give a directory for the node ID and the Raft state (it is created if missing)")
		}
		if c.BootstrapExpect < 0 {
			return fmt.Errorf("-bootstrap-expect=%d is negative; use the number of servers (1, 3 or 5)", c.BootstrapExpect)
		}
		if c.BootstrapExpect > 0 && !c.Server {
			return fmt.Errorf("-bootstrap-expect=%d needs -server: only servers take part in the Raft group; add -server or drop -bootstrap-expect", c.BootstrapExpect)
		}
	}
	if c.ReconnectTimeout < 0 {
		return fmt.Errorf("reconnect_timeout %v is negative; drop it for the default 72h", c.ReconnectTimeout)
	}
	if c.NodeID != "" && !isUUID(c.NodeID) {
		return fmt.Errorf("-node-id=%q is not a UUID (like 4f1a8a6e-2b1c-4c59-9b38-6c2f1d0e9a11); drop it to use the one kept in the data dir", c.NodeID)
	}
	if strings.TrimSpace(c.NodeName) != c.NodeName || strings.ContainsAny(c.NodeName, " \t\n/") {
		return fmt.Errorf("-node=%q contains spaces or slashes; use a name of letters, digits, '-', '_' and '.'", c.NodeName)
	}
	if c.Datacenter == "" {
		return errors.New("-datacenter is empty; drop it to use dc1")
	}
	if !datacenterRE.MatchString(c.Datacenter) {
		return fmt.Errorf("-datacenter=%q may only contain letters, digits, '_' and '-'", c.Datacenter)
	}
	for _, a := range []struct{ flag, value string }{
		{"-bind", c.BindAddr},
		{"-advertise", c.AdvertiseAddr},
	} {
		if a.value == "" {
			continue
		}
		if _, err := netip.ParseAddr(a.value); err != nil {
			return fmt.Errorf("%s=%q is not an IP address; give one IP, such as 10.0.0.5 (no port: ports have their own flags)", a.flag, a.value)
		}
	}
	if c.ClientAddr == "" {
		return errors.New("-client is empty; give the IP for the HTTP API and DNS, such as 127.0.0.1 or 0.0.0.0")
	}
	if _, err := netip.ParseAddr(c.ClientAddr); err != nil {
		return fmt.Errorf("-client=%q is not an IP address; give one IP, such as 127.0.0.1 or 0.0.0.0", c.ClientAddr)
	}
	if err := c.Ports.validate(); err != nil {
		return err
	}
	if err := c.validateVIP(); err != nil {
		return err
	}
	if c.Encrypt != "" {
		key, err := base64.StdEncoding.DecodeString(c.Encrypt)
		if err != nil {
			return fmt.Errorf("-encrypt is not valid base64 (%v); generate a key with: openssl rand -base64 32", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("-encrypt decodes to %d bytes; a gossip key is 16, 24 or 32 bytes; generate one with: openssl rand -base64 32", n)
		}
	}
	if err := c.validateDNS(); err != nil {
		return err
	}
	if err := c.DockerOptions.validate(); err != nil {
		return err
	}
	if _, err := c.templateConfig(false); err != nil {
		return err
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown timeout %v is negative", c.ShutdownTimeout)
	}
	if c.RPCHoldTimeout < 0 {
		return fmt.Errorf("-rpc-hold-timeout (performance.rpc_hold_timeout) %v is negative; drop it for the default 7s", c.RPCHoldTimeout)
	}
	if c.Limits.HTTPMaxConnsPerClient < 0 {
		return fmt.Errorf("limits.http_max_conns_per_client = %d is negative; use 0 for no limit or drop it for the default 200", c.Limits.HTTPMaxConnsPerClient)
	}
	if c.Limits.MaxBlockingQueries < 0 {
		return fmt.Errorf("limits.max_blocking_queries = %d is negative; drop it for the default 16384", c.Limits.MaxBlockingQueries)
	}
	return nil
}

// dnsFlags names the flag or config key behind each dns.Config field.
var dnsFlags = map[string]string{
	"Addr": "-client", "Domain": "-domain", "AltDomain": "-alt-domain", "Datacenter": "-datacenter",
	"TTL": "dns_config.service_ttl", "NodeTTL": "dns_config.node_ttl", "Recursors": "-recursor",
}

// validateDNS judges the DNS settings by dns's own rules (dns owns
// them), naming the flags that set them. Nothing is checked when DNS is
// off.
func (c Config) validateDNS() error {
	if c.Ports.DNS < 0 {
		return nil
	}
	err := c.dnsConfig().Validate()
	if err == nil {
		return nil
	}
	var fe *dns.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	flag := dnsFlags[fe.Field]
	if flag == "" {
		return err
	}
	msg := fmt.Sprintf("%s=%q %s", flag, fe.Value, fe.Problem)
	if fe.Field == "Datacenter" {
		msg += "; use '-' instead of '_', or turn DNS off with -dns-port=-1"
	}
	return errors.New(msg)
}

func (p Ports) validate() error {
	ports := []struct {
		flag    string
		value   int
		disable bool // -1 turns the listener off
	}{
		{"-http-port", p.HTTP, true},
		{"-dns-port", p.DNS, true},
		{"-serf-lan-port", p.SerfLAN, false},
		{"-server-port", p.Server, false},
	}
	seen := map[int]string{}
	for _, pt := range ports {
		switch {
		case pt.value == -1 && pt.disable:
			continue
		case pt.value < 0 || pt.value > 65535:
			hint := "0 picks a free port"
			if pt.disable {
				hint += ", -1 turns it off"
			}
			return fmt.Errorf("%s=%d is out of range; use 1-65535 (%s)", pt.flag, pt.value, hint)
		case pt.value == 0:
			continue
		}
		if other, ok := seen[pt.value]; ok {
			return fmt.Errorf("%s=%d is also %s; give each port its own number", pt.flag, pt.value, other)
		}
		seen[pt.value] = pt.flag
	}
	return nil
}

// normDomain is a domain in lower case without its dots at either end.
func normDomain(d string) string { return strings.ToLower(strings.Trim(d, ".")) }

// ParseLogLevel maps Consul's log levels to slog's: trace (below debug),
// debug, info, warn (or warning) and err (or error), in any case.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return slog.LevelDebug - 4, nil
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "err", "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("-log-level=%q is not a log level; use trace, debug, info, warn or err", s)
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}
