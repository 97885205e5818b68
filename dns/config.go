package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Config configures a Server. The zero value of every field but
// OnlyPassing means its default; start from DefaultConfig.
type Config struct {
	// Addr is the host:port the UDP and the TCP server listen on
	// (Consul's -dns-port on -client). With port 0, TCP takes the port
	// the kernel gave UDP. Default "127.0.0.1:8600".
	Addr string
	// PacketConn and Listener, when set, are served instead of listening
	// on Addr (tests bind 127.0.0.1:0 themselves). Run closes them.
	PacketConn net.PacketConn
	Listener   net.Listener
	// NotifyStarted, when set, is called once, from Run's goroutines, when
	// both servers accept queries.
	NotifyStarted func()

	// Domain is the cluster domain. Default "cluster.".
	Domain string
	// AltDomain, when set, answers the same names under a second domain,
	// e.g. "consul." for clients written for Consul (Consul's alt_domain).
	AltDomain string
	// Datacenter is the <dc> of Consul's names (<node>.node.<dc>.<domain>).
	// Default "dc1", Consul's.
	Datacenter string

	// TTL is the TTL of service records (Consul's dns_config.service_ttl;
	// Docker Swarm answers with 0). Default 0. Whole seconds.
	TTL time.Duration
	// NodeTTL is the TTL of node, addr and PTR records (Consul's
	// dns_config.node_ttl). Default 0. Whole seconds.
	NodeTTL time.Duration
	// SOAMinTTL is the SOA minimum, which is also the SOA's own TTL, so
	// the TTL resolvers cache NXDOMAIN and NODATA for (RFC 2308; Consul's
	// dns_config.soa.min_ttl). Default 0. Whole seconds.
	SOAMinTTL time.Duration

	// OnlyPassing answers only passing instances when true; when false,
	// warning instances are answered too. Critical ones never are.
	// DefaultConfig sets it (DESIGN.md: only passing instances are
	// answered); Consul's dns_config.only_passing defaults to false.
	OnlyPassing bool

	// Recursors are the DNS servers (IP or IP:port, port 53 by default)
	// that names outside the domains are forwarded to, in order: UDP, then
	// TCP when the answer is truncated; the next one on an error, a
	// timeout, SERVFAIL or REFUSED. None: such names are REFUSED.
	Recursors []string
	// RecursorTimeout bounds each exchange with a recursor. Default 2s
	// (Consul's dns_config.recursor_timeout).
	RecursorTimeout time.Duration

	// Queries, when set, answers Consul's prepared query names
	// (<query>.query.<domain>); without it they do not exist.
	Queries Queries

	// Logger receives one line per state change (start, stop, a service
	// that cannot be answered); nil discards.
	Logger *slog.Logger

	// Metrics, when set, is told about every query answered: its rcode
	// and how long answering took. Called from the query's goroutine; it
	// must not block.
	Metrics Metrics
}

// Metrics records DNS queries (the agent's metrics registry).
type Metrics interface {
	Query(rcode int, elapsed time.Duration)
}

// DefaultConfig returns the configuration cairn runs with when nothing is
// set.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8600",
		Domain:          "cluster.",
		Datacenter:      "dc1",
		OnlyPassing:     true,
		RecursorTimeout: 2 * time.Second,
	}
}

// settings is a validated Config in the form queries use.
type settings struct {
	domains   []string // lower-case FQDNs, Domain first
	dc        string
	ttl       uint32
	nodeTTL   uint32
	soaMin    uint32
	passing   bool
	recursors []string // IP:port
	timeout   time.Duration
}

// FieldError is a Config field with a bad value: which field, the value
// as given, and what is wrong with it and what to do. The agent, which
// sets the fields from flags and config files, names the flag instead.
type FieldError struct {
	Field   string // the Config field: Addr, Domain, AltDomain, Datacenter, TTL, NodeTTL, SOAMinTTL, Recursors, RecursorTimeout
	Value   string
	Problem string // "is not a DNS label (...)", "overlaps ...; pick ..."
}

// fieldNames are the fields as dns's own errors say them.
var fieldNames = map[string]string{
	"Addr": "dns address", "Domain": "domain", "AltDomain": "alt domain", "Datacenter": "datacenter",
	"TTL": "dns TTL", "NodeTTL": "dns node TTL", "SOAMinTTL": "dns SOA min TTL",
	"Recursors": "recursor", "RecursorTimeout": "recursor timeout",
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q %s", fieldNames[e.Field], e.Value, e.Problem)
}

func fieldErr(field, value, format string, args ...any) error {
	return &FieldError{Field: field, Value: value, Problem: fmt.Sprintf(format, args...)}
}

// Validate reports what is wrong with cfg, every problem as a
// *FieldError (joined), without changing it. New validates too; the
// agent calls Validate up front, before it opens anything.
func (cfg Config) Validate() error {
	_, err := cfg.validate()
	return err
}

// validate checks cfg, fills defaults in, and returns what queries use.
func (cfg *Config) validate() (settings, error) {
	def := DefaultConfig()
	var st settings
	var errs []error
	if cfg.Addr == "" {
		cfg.Addr = def.Addr
	}
	if cfg.PacketConn == nil || cfg.Listener == nil {
		if _, err := netip.ParseAddrPort(cfg.Addr); err != nil {
			errs = append(errs, fieldErr("Addr", cfg.Addr, "is not IP:port (e.g. 127.0.0.1:8600): %v", err))
		}
	}
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	dom, err := normalizeDomain("Domain", cfg.Domain)
	if err != nil {
		errs = append(errs, err)
	}
	st.domains = append(st.domains, dom)
	if cfg.AltDomain != "" {
		alt, err := normalizeDomain("AltDomain", cfg.AltDomain)
		switch {
		case err != nil:
			errs = append(errs, err)
		case alt == dom || strings.HasSuffix(alt, "."+dom) || strings.HasSuffix(dom, "."+alt):
			errs = append(errs, fieldErr("AltDomain", cfg.AltDomain, "overlaps domain %q; names would be ambiguous, pick a domain that is not inside the other", cfg.Domain))
		default:
			st.domains = append(st.domains, alt)
		}
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = def.Datacenter
	}
	st.dc = strings.ToLower(cfg.Datacenter)
	if !validLabel(st.dc) {
		errs = append(errs, fieldErr("Datacenter", cfg.Datacenter, "is not a DNS label (letters, digits and inner hyphens, at most 63), and DNS answers <node>.node.<datacenter>.<domain>"))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
		out   *uint32
	}{{"TTL", cfg.TTL, &st.ttl}, {"NodeTTL", cfg.NodeTTL, &st.nodeTTL}, {"SOAMinTTL", cfg.SOAMinTTL, &st.soaMin}} {
		if d.v < 0 || d.v%time.Second != 0 || d.v/time.Second > math.MaxInt32 {
			errs = append(errs, fieldErr(d.field, d.v.String(), "must be whole seconds between 0s and %ds", math.MaxInt32))
			continue
		}
		*d.out = uint32(d.v / time.Second)
	}
	st.passing = cfg.OnlyPassing
	for _, r := range cfg.Recursors {
		ap, err := parseRecursor(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.recursors = append(st.recursors, ap)
	}
	if cfg.RecursorTimeout < 0 {
		errs = append(errs, fieldErr("RecursorTimeout", cfg.RecursorTimeout.String(), "is negative; use 0 for the default %v", def.RecursorTimeout))
	}
	if cfg.RecursorTimeout == 0 {
		cfg.RecursorTimeout = def.RecursorTimeout
	}
	st.timeout = cfg.RecursorTimeout
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return st, errors.Join(errs...)
}

// normalizeDomain returns d, the value of field, as a lower-case FQDN.
func normalizeDomain(field, d string) (string, error) {
	fq := mdns.Fqdn(strings.ToLower(strings.TrimPrefix(d, ".")))
	if fq == "." {
		return "", fieldErr(field, d, "is the root; cairn needs a domain of its own such as cluster.")
	}
	for _, l := range strings.Split(strings.TrimSuffix(fq, "."), ".") {
		if !validLabel(l) {
			return "", fieldErr(field, d, "is not a DNS domain: %q is not a DNS label (letters, digits and inner hyphens, at most 63); use a name like cluster or consul", l)
		}
	}
	return fq, nil
}

// parseRecursor returns r as IP:port, with port 53 when r has none.
func parseRecursor(r string) (string, error) {
	if ap, err := netip.ParseAddrPort(r); err == nil {
		if ap.Port() == 0 {
			return "", fieldErr("Recursors", r, "has port 0; use IP or IP:port, such as 1.1.1.1 or 10.0.0.2:53")
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(r, "[]")); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fieldErr("Recursors", r, "is not an IP or IP:port (e.g. 1.1.1.1 or [2606:4700::1111]:53); host names are not resolved")
}
