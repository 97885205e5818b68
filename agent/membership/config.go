package membership

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port, Consul's serf_lan port. Join uses it for
// an address given without a port.
const DefaultPort = 8301

// Config configures a Membership. Start from DefaultConfig; New validates.
type Config struct {
	// NodeName (-node) names this agent in the cluster; it must be unique
	// there. Required.
	NodeName string
	// BindAddr (-bind) is the IP the gossip port listens on, UDP and TCP.
	// Empty means 0.0.0.0.
	BindAddr string
	// BindPort (-serf-lan-port) is the gossip port. 0 lets the kernel pick
	// one (tests); LocalMember reports it. DefaultConfig sets 8301.
	BindPort int
	// AdvertiseAddr (-advertise) is the IP other agents reach this one on.
	// Empty means BindAddr, or this host's private IP when BindAddr is
	// 0.0.0.0.
	AdvertiseAddr string
	// AdvertisePort is the port other agents reach this one on; 0 means
	// the bound port.
	AdvertisePort int
	// EncryptKey (-encrypt, decoded with DecodeKey) encrypts and
	// authenticates all gossip with AES-GCM: 16, 24 or 32 bytes. nil means
	// no encryption. Every agent of a cluster needs the same key; an
	// agent with another key, or none, cannot join.
	EncryptKey []byte
	// KeyringFile, when set, keeps the gossip keyring (keyring.go) so
	// that keys rotated with `cairn keyring` survive a restart: Consul's
	// <data-dir>/serf/local.keyring. When it exists it wins over
	// EncryptKey; when it does not, EncryptKey is saved to it.
	KeyringFile string
	// Meta is what this agent tells the others about itself.
	Meta Meta
	// Fast uses much tighter probe and gossip timings, for one machine
	// (-dev, tests): a killed member is seen failed within about 1-2 s
	// instead of several seconds, at the cost of more traffic and of false
	// alarms on a slow network. Never use it across real networks.
	Fast bool
	// ReapFailedAfter is how long a failed or left member stays in
	// Members before it is dropped, like Consul's reconnect_timeout.
	// 0 means 72h.
	ReapFailedAfter time.Duration
	// Logger receives this package's log and memberlist's; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: this host's name, 0.0.0.0:8301, a
// client agent in dc1, no encryption, LAN timings, failed members kept for
// 72 hours.
func DefaultConfig() Config {
	name, _ := os.Hostname()
	return Config{
		NodeName: name,
		BindAddr: "0.0.0.0",
		BindPort: DefaultPort,
		Meta: Meta{
			Role:       RoleClient,
			Datacenter: "dc1",
			Proto:      ProtocolVersion,
			HTTPPort:   8500,
			DNSPort:    8600,
		},
		ReapFailedAfter: 72 * time.Hour,
	}
}

// validate fills in zero values and checks every field, returning the
// completed copy.
func (c Config) validate() (Config, error) {
	if c.NodeName == "" {
		return c, fmt.Errorf("membership: node name is empty; set -node")
	}
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(c.BindAddr); err != nil {
		return c, fmt.Errorf("membership: -bind=%q is not an IP address; use one of this host's addresses, or 0.0.0.0 for all", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return c, fmt.Errorf("membership: -serf-lan-port=%d is not a port (0-65535); the default is %d", c.BindPort, DefaultPort)
	}
	if c.AdvertiseAddr != "" {
		a, err := netip.ParseAddr(c.AdvertiseAddr)
		if err != nil || a.IsUnspecified() {
			return c, fmt.Errorf("membership: -advertise=%q is not an IP address other agents can reach; give this host's address on the cluster network", c.AdvertiseAddr)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return c, fmt.Errorf("membership: advertise port %d is not a port (0-65535); 0 means the bound port", c.AdvertisePort)
	}
	if c.EncryptKey != nil {
		if err := checkKeyLen(len(c.EncryptKey)); err != nil {
			return c, fmt.Errorf("membership: -encrypt: %w", err)
		}
		c.EncryptKey = append([]byte(nil), c.EncryptKey...) // memberlist keeps it
	}
	if c.ReapFailedAfter < 0 {
		return c, fmt.Errorf("membership: ReapFailedAfter=%v is negative; use 0 for the default (72h)", c.ReapFailedAfter)
	}
	if c.ReapFailedAfter == 0 {
		c.ReapFailedAfter = 72 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}

	m := &c.Meta
	switch m.Role {
	case "":
		m.Role = RoleClient
	case RoleServer, RoleClient:
	default:
		return c, fmt.Errorf("membership: role %q is neither %q nor %q", m.Role, RoleServer, RoleClient)
	}
	if m.Datacenter == "" {
		m.Datacenter = "dc1"
	}
	if m.Proto == 0 {
		m.Proto = ProtocolVersion
	}
	if m.Proto != ProtocolVersion {
		return c, fmt.Errorf("membership: protocol version %d is not supported; this build speaks %d", m.Proto, ProtocolVersion)
	}
	if m.Role == RoleServer {
		if err := checkHostPort(m.RaftAddr); err != nil {
			return c, fmt.Errorf("membership: a server must advertise its Raft address: %w", err)
		}
	} else if m.RaftAddr != "" {
		return c, fmt.Errorf("membership: Raft address %q is set on a client; only servers (-server) have one", m.RaftAddr)
	}
	if m.NodeID != "" && !isUUID(m.NodeID) {
		return c, fmt.Errorf("membership: -node-id=%q is not a UUID (like 6a2f5c9e-0b1d-4e8f-9c3a-2d7b1e0f4a56)", m.NodeID)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"-http-port", m.HTTPPort}, {"-dns-port", m.DNSPort}} {
		if p.port < 0 || p.port > 65535 {
			return c, fmt.Errorf("membership: %s=%d is not a port (0-65535)", p.flag, p.port)
		}
	}
	// The leaving form is the longest; it must fit too.
	if _, err := encodeMeta(c.Meta, true); err != nil {
		return c, fmt.Errorf("membership: %w", err)
	}
	return c, nil
}

func checkHostPort(s string) error {
	if s == "" {
		return fmt.Errorf("server address is empty; want host:port (the -server-port, 8300 by default)")
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return fmt.Errorf("server address %q is not an IP:port other agents can reach, like 10.0.0.5:8300", s)
	}
	return nil
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
			if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
				return false
			}
		}
	}
	return true
}

// Timings of the Fast mode. Failure detection: a survivor probes the dead
// member within a few ProbeIntervals, then suspects it for
// SuspicionMult*ProbeInterval (0.6 s) when another member confirms, at most
// SuspicionMaxTimeoutMult times that (1.8 s) when none does.
const (
	fastProbeInterval    = 200 * time.Millisecond
	fastProbeTimeout     = 100 * time.Millisecond
	fastGossipInterval   = 50 * time.Millisecond
	fastPushPullInterval = 5 * time.Second
	fastTCPTimeout       = 2 * time.Second

	retryJoinMin     = time.Second
	retryJoinMax     = 30 * time.Second
	fastRetryJoinMin = 100 * time.Millisecond
	fastRetryJoinMax = time.Second
)

// memberlistConfig turns a validated Config into memberlist's.
func (c Config) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if mc.AdvertisePort == 0 {
		// memberlist fills it in with the kernel's choice when BindPort is 0.
		mc.AdvertisePort = c.BindPort
	}
	// Refuse anything unencrypted (or encrypted with another key) when we
	// have a key, and never send in the clear: a mismatched agent cannot
	// join, rather than half-join.
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	// A failed member's name may be taken at once by an agent at another
	// address: a container that restarts with a new IP rejoins under its
	// name. A live member's name is never taken (see NotifyMerge).
	mc.DeadNodeReclaimTime = time.Nanosecond
	if c.Fast {
		mc.ProbeInterval = fastProbeInterval
		mc.ProbeTimeout = fastProbeTimeout
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 3
		mc.GossipInterval = fastGossipInterval
		mc.GossipToTheDeadTime = 5 * time.Second
		mc.PushPullInterval = fastPushPullInterval
		mc.TCPTimeout = fastTCPTimeout
		mc.RetransmitMult = 3
	}
	mc.Logger = newMemberlistLogger(c.Logger)
	return mc
}

func (c Config) bindAddrPort() string {
	return netip.AddrPortFrom(netip.MustParseAddr(c.BindAddr), uint16(c.BindPort)).String()
}
