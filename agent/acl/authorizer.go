// Package acl owns Consul's ACL model in cairn: tokens, policies and roles,
// the rule language (HCL or JSON: key/key_prefix, service/service_prefix,
// node/node_prefix, session/session_prefix, agent/agent_prefix,
// event_prefix, query_prefix, operator, keyring, acl), and the Authorizer
// a token resolves to. It decides; it does not enforce: the HTTP API, DNS
// and the forwarding server ask an Authorizer before they act.
package acl

// Access is a rule's level, in Consul's order: a rule grants its level and
// every level below it (write ⊃ list ⊃ read), except deny, which grants
// nothing and beats every other rule of the same specificity.
type Access uint8

const (
	// Unset: no rule says anything; the default policy decides.
	Unset Access = iota
	Deny
	Read
	List // key_prefix only: recursive reads (Consul's "list")
	Write
)

// Resource is the kind of thing a rule governs, named as in Consul's rules.
type Resource string

const (
	Key      Resource = "key"
	Service  Resource = "service"
	Node     Resource = "node"
	Session  Resource = "session" // named by the session's node
	Agent    Resource = "agent"   // named by the agent's node name
	Event    Resource = "event"
	Query    Resource = "query" // prepared queries, by name
	Operator Resource = "operator"
	Keyring  Resource = "keyring"
	ACL      Resource = "acl" // the ACL system itself (tokens, policies, roles)
	Mesh     Resource = "mesh"
)

// Authorizer answers what one token may do. Safe for concurrent use.
// Unnamed resources (operator, keyring, acl, mesh) take name "".
type Authorizer interface {
	// Allowed reports whether want is granted on the resource named name.
	Allowed(r Resource, name string, want Access) bool
	// AllowedUnder reports whether want is granted on prefix and on every
	// name under it: no rule for a longer prefix or an exact name below it
	// takes want away (Consul's KeyWritePrefix, for recursive deletes).
	AllowedUnder(r Resource, prefix string, want Access) bool
}

// AllowAll is the Authorizer when ACLs are off, and the management
// token's: everything is allowed.
func AllowAll() Authorizer { return allowAll{} }

type allowAll struct{}

func (allowAll) Allowed(Resource, string, Access) bool      { return true }
func (allowAll) AllowedUnder(Resource, string, Access) bool { return true }

// Fingerprint: see policyAuthorizer's.
func (allowAll) Fingerprint() string { return "allow all" }
