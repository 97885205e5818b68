package catalog

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/membership"
)

// Config configures a Catalog. Start from DefaultConfig; New validates.
type Config struct {
	// NodeName is this agent's node (-node): the name of its own entry,
	// and the origin of everything it publishes. Required.
	NodeName string
	// NodeID is the node's UUID (Node.ID).
	NodeID string
	// Datacenter is reported on every node; empty means "dc1".
	Datacenter string
	// Address is the node's address (-advertise): Node.Address and the
	// default address of its services. Required.
	Address string
	// NodeMeta is this node's Node.Meta (besides Consul's
	// "consul-network-segment").
	NodeMeta map[string]string
	// ServerService, when set, is published with this agent's node but is
	// not one of its local services (/v1/agent/services does not list it):
	// the "consul" service Consul's servers put in the catalog.
	ServerService *Service
	// DataDir keeps this agent's services, checks, catalog registrations
	// and version high-water mark, so they survive a restart, in the log
	// <DataDir>/catalog/state.log (see store.go; the per-entry files of
	// earlier versions are moved into it). Empty keeps nothing (tests,
	// -dev).
	DataDir string
	// EnableScriptChecks (-enable-script-checks) allows checks that run
	// a program (Args); without it they are refused, as in Consul.
	EnableScriptChecks bool
	// ValidateCheck, when set, judges the definitions of checks that run
	// (HTTP, TCP, script, TTL) at registration, so that a bad one is
	// refused with the runner's own reason (agent/checks'
	// Definition.Validate) rather than failing later. nil applies the
	// catalog's own basic rules.
	ValidateCheck func(checks.Definition) error
	// Members is the membership view that decides which other agents'
	// entries are shown and how healthy their nodes are. nil means no
	// other agent is ever shown (a lone agent, tests).
	Members Members
	// CheckUpdateInterval is how long a check's new output waits before
	// it is spread when its status did not change (Consul's
	// check_update_interval): output-only changes ride on the next real
	// change, or go out after this long. 0 means 5 minutes. Local reads
	// (/v1/agent/checks) always show the latest output.
	CheckUpdateInterval time.Duration
	// PublishGap is the least time between two publications of this
	// agent's state; changes within it go out together. 0 means 100 ms
	// (20 ms with Fast).
	PublishGap time.Duration
	// ForgetAfter is how long the state of an agent that is not a member
	// (any more, or yet) is kept before it is dropped. 0 means 10
	// minutes.
	ForgetAfter time.Duration
	// SigningKey, when set, signs every record of this agent's state
	// (origin, version and content) with ed25519, so that the record
	// can be checked by whoever receives it, relayed or in push/pull.
	// It is the agent's long-term gossip identity (see signing.go).
	SigningKey ed25519.PrivateKey
	// Keys, when set, is where the other agents' public keys come from:
	// a record is then applied only when it is signed by its origin's
	// key, unsigned records are ignored, and a record whose origin has no
	// key yet is held until KeysChanged says one may have come. nil
	// applies records without checking signatures (tests, a lone
	// agent).
	Keys Keys
	// Fast shortens the timings for agents that share one machine (-dev,
	// tests).
	Fast bool
	// Logger gets one line per state change of another agent's entries
	// and per problem; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; NodeName and Address must still be
// set.
func DefaultConfig() Config {
	return Config{
		Datacenter:          "dc1",
		CheckUpdateInterval: 5 * time.Minute,
		PublishGap:          100 * time.Millisecond,
		ForgetAfter:         10 * time.Minute,
	}
}

func (c Config) validate() (Config, error) {
	if c.NodeName == "" {
		return c, fmt.Errorf("catalog: NodeName is empty; set -node")
	}
	if c.Address == "" {
		return c, fmt.Errorf("catalog: Address is empty; give the node's advertised address (-advertise)")
	}
	if _, err := netip.ParseAddr(c.Address); err != nil {
		return c, fmt.Errorf("catalog: Address=%q is not an IP address; give the node's advertised address (-advertise)", c.Address)
	}
	if c.Datacenter == "" {
		c.Datacenter = "dc1"
	}
	if c.SigningKey != nil && len(c.SigningKey) != ed25519.PrivateKeySize {
		return c, fmt.Errorf("catalog: SigningKey is %d bytes; an ed25519 private key is %d", len(c.SigningKey), ed25519.PrivateKeySize)
	}
	if c.Keys != nil && c.SigningKey == nil {
		return c, fmt.Errorf("catalog: Keys is set without SigningKey: an agent that checks the others' signatures must sign its own records")
	}
	for name, d := range map[string]time.Duration{"CheckUpdateInterval": c.CheckUpdateInterval, "PublishGap": c.PublishGap, "ForgetAfter": c.ForgetAfter} {
		if d < 0 {
			return c, fmt.Errorf("catalog: %s=%v is negative; use 0 for the default", name, d)
		}
	}
	def := DefaultConfig()
	if c.CheckUpdateInterval == 0 {
		c.CheckUpdateInterval = def.CheckUpdateInterval
	}
	if c.PublishGap == 0 {
		c.PublishGap = def.PublishGap
		if c.Fast {
			c.PublishGap = 20 * time.Millisecond
		}
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = def.ForgetAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// MemberStatus is an agent's membership status: membership's own type,
// which owns what the statuses are.
type MemberStatus = membership.Status

// The statuses that matter to the catalog.
const (
	MemberAlive   = membership.StatusAlive
	MemberLeaving = membership.StatusLeaving
	MemberLeft    = membership.StatusLeft
	MemberFailed  = membership.StatusFailed
)

// Member is one agent as membership sees it.
type Member struct {
	Name   string
	Status MemberStatus
}

// Members is the catalog's view of membership: every agent it knows,
// failed and left ones included until they are reaped (reconnect_timeout),
// with an index and a watch set like every read in cairn. Safe for
// concurrent use.
type Members interface {
	Members(ws memdb.WatchSet) (uint64, []Member)
}

// Gossip is how the catalog reaches the other agents: membership's
// channel (membership.Channel). Safe for concurrent use.
type Gossip interface {
	// Broadcast queues msg for gossip to every member, replacing a
	// queued one with the same key; at most MaxBroadcastSize bytes.
	Broadcast(key string, msg []byte) error
	// SendBestEffort sends msg (at most MaxBroadcastSize) to one live
	// member in one UDP packet.
	SendBestEffort(node string, msg []byte) error
	// SendReliable sends msg of any size to one live member over TCP.
	SendReliable(node string, msg []byte) error
	// MaxBroadcastSize is the largest message Broadcast takes.
	MaxBroadcastSize() int
}

// Runner runs this agent's checks that need running (HTTP, TCP, script,
// and the expiry of TTL checks): agent/checks, adapted by the agent. It
// reports results through the catalog's UpdateCheck and
// DeregisterService, from its own goroutines. Add and Remove are called
// from one goroutine of the catalog's, never with the catalog's locks
// held.
type Runner interface {
	// Add starts running def, replacing a check of the same ID.
	Add(def checks.Definition) error
	// Remove stops the check; unknown IDs are ignored.
	Remove(id string)
	// TTL records an application's report on a TTL check and restarts
	// its timer.
	TTL(id, status, output string) error
}
