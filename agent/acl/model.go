package acl

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The built-in IDs Consul reserves.
const (
	GlobalManagementID   = "00000000-0000-0000-0000-000000000001"
	GlobalManagementName = "global-management"
	GlobalReadOnlyID     = "00000000-0000-0000-0000-000000000002"
	GlobalReadOnlyName   = "builtin/global-read-only"
	AnonymousAccessorID  = "00000000-0000-0000-0000-000000000002"
	AnonymousSecretID    = "anonymous"
)

// globalManagementRules are Consul's global-management policy rules.
const globalManagementRules = `acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}`

// globalReadOnlyRules are Consul's builtin/global-read-only rules.
const globalReadOnlyRules = `acl = "read"
agent_prefix "" {
  policy = "read"
}
event_prefix "" {
  policy = "read"
}
key_prefix "" {
  policy = "read"
}
keyring = "read"
node_prefix "" {
  policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
  intentions = "read"
}
session_prefix "" {
  policy = "read"
}`

// PolicyLink names a policy from a token or role; the store keeps the
// ID and fills in the current name when it answers.
type PolicyLink struct {
	ID   string
	Name string
}

// RoleLink names a role from a token.
type RoleLink struct {
	ID   string
	Name string
}

// ServiceIdentity grants a service's rules (see ServiceIdentity.Rules).
type ServiceIdentity struct {
	ServiceName string
	Datacenters []string `json:",omitempty"`
}

// NodeIdentity grants a node's rules in one datacenter.
type NodeIdentity struct {
	NodeName   string
	Datacenter string
}

// Rules are the rules Consul synthesizes for a service identity.
func (s ServiceIdentity) Rules() string {
	return fmt.Sprintf(`service %q { policy = "write" }
service %q { policy = "write" }
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`, s.ServiceName, s.ServiceName+"-sidecar-proxy")
}

// Rules are the rules Consul synthesizes for a node identity.
func (n NodeIdentity) Rules() string {
	return fmt.Sprintf(`node %q { policy = "write" }
service_prefix "" { policy = "read" }`, n.NodeName)
}

// Token is Consul's ACLToken, as /v1/acl/token answers it.
type Token struct {
	CreateIndex       uint64
	ModifyIndex       uint64
	AccessorID        string
	SecretID          string
	Description       string
	Policies          []*PolicyLink      `json:",omitempty"`
	Roles             []*RoleLink        `json:",omitempty"`
	ServiceIdentities []*ServiceIdentity `json:",omitempty"`
	NodeIdentities    []*NodeIdentity    `json:",omitempty"`
	Local             bool
	AuthMethod        string     `json:",omitempty"`
	ExpirationTTL     Duration   `json:",omitempty"`
	ExpirationTime    *time.Time `json:",omitempty"`
	CreateTime        time.Time
	Hash              []byte
	// Rules is Consul's legacy field; always empty, kept so requests
	// carrying it decode.
	Rules string `json:",omitempty"`
}

// Expired reports whether t has an expiration time at or before now.
func (t *Token) Expired(now time.Time) bool {
	return t.ExpirationTime != nil && !t.ExpirationTime.After(now)
}

// SetHash computes Consul's token hash: over what the token grants and
// says, not over its indexes.
func (t *Token) SetHash() {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%t\x00", t.SecretID, t.Description, t.Local)
	for _, p := range t.Policies {
		fmt.Fprintf(h, "p%s\x00", p.ID)
	}
	for _, r := range t.Roles {
		fmt.Fprintf(h, "r%s\x00", r.ID)
	}
	for _, s := range t.ServiceIdentities {
		fmt.Fprintf(h, "s%s\x00%s\x00", s.ServiceName, strings.Join(s.Datacenters, ","))
	}
	for _, n := range t.NodeIdentities {
		fmt.Fprintf(h, "n%s\x00%s\x00", n.NodeName, n.Datacenter)
	}
	t.Hash = h.Sum(nil)
}

// Policy is Consul's ACLPolicy.
type Policy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string `json:",omitempty"`
	Hash        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// SetHash computes the policy's hash over its name, description, rules
// and datacenters.
func (p *Policy) SetHash() {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", p.Name, p.Description, p.Rules, strings.Join(p.Datacenters, ","))
	p.Hash = h.Sum(nil)
}

// PolicyListEntry is Consul's ACLPolicyListEntry: a policy without rules.
type PolicyListEntry struct {
	ID          string
	Name        string
	Description string
	Datacenters []string `json:",omitempty"`
	Hash        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// Stub returns p's list entry.
func (p *Policy) Stub() *PolicyListEntry {
	return &PolicyListEntry{ID: p.ID, Name: p.Name, Description: p.Description, Datacenters: p.Datacenters,
		Hash: p.Hash, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
}

// Role is Consul's ACLRole.
type Role struct {
	ID                string
	Name              string
	Description       string
	Policies          []*PolicyLink      `json:",omitempty"`
	ServiceIdentities []*ServiceIdentity `json:",omitempty"`
	NodeIdentities    []*NodeIdentity    `json:",omitempty"`
	Hash              []byte
	CreateIndex       uint64
	ModifyIndex       uint64
}

// SetHash computes the role's hash.
func (r *Role) SetHash() {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.Name, r.Description)
	for _, p := range r.Policies {
		fmt.Fprintf(h, "p%s\x00", p.ID)
	}
	for _, s := range r.ServiceIdentities {
		fmt.Fprintf(h, "s%s\x00%s\x00", s.ServiceName, strings.Join(s.Datacenters, ","))
	}
	for _, n := range r.NodeIdentities {
		fmt.Fprintf(h, "n%s\x00%s\x00", n.NodeName, n.Datacenter)
	}
	r.Hash = h.Sum(nil)
}

// builtinPolicies are Consul's two built-in policies. They are not
// stored: the store answers them, and refuses to change their rules.
func builtinPolicies() []*Policy {
	ps := []*Policy{
		{ID: GlobalManagementID, Name: GlobalManagementName, Description: "Builtin Policy that grants unlimited access", Rules: globalManagementRules},
		{ID: GlobalReadOnlyID, Name: GlobalReadOnlyName, Description: "Builtin Policy that grants unlimited read-only access to all components", Rules: globalReadOnlyRules},
	}
	for _, p := range ps {
		p.SetHash()
	}
	return ps
}

// anonymousToken is the anonymous token as it is until someone updates
// it (e.g. to give it a policy for DNS).
func anonymousToken() *Token {
	t := &Token{AccessorID: AnonymousAccessorID, SecretID: AnonymousSecretID, Description: "Anonymous Token"}
	t.SetHash()
	return t
}

// Duration is a time.Duration that decodes from Consul's two spellings:
// a number of nanoseconds or a string such as "1h".
type Duration time.Duration

// UnmarshalJSON accepts 3600000000000 or "1h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration; give one with a unit, such as \"1h\"", s)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a duration; give nanoseconds or a string such as \"1h\"", b)
	}
	*d = Duration(n)
	return nil
}

// dedupe keeps the first link of each ID.
func dedupePolicies(ls []*PolicyLink) []*PolicyLink {
	var out []*PolicyLink
	for _, l := range ls {
		if !slices.ContainsFunc(out, func(o *PolicyLink) bool { return o.ID == l.ID }) {
			out = append(out, l)
		}
	}
	return out
}

func dedupeRoles(ls []*RoleLink) []*RoleLink {
	var out []*RoleLink
	for _, l := range ls {
		if !slices.ContainsFunc(out, func(o *RoleLink) bool { return o.ID == l.ID }) {
			out = append(out, l)
		}
	}
	return out
}
