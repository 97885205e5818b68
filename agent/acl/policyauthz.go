package acl

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Default says what a request gets when no rule names it: Consul's
// default_policy.
type Default bool

const (
	DefaultDeny  Default = false
	DefaultAllow Default = true
)

// table holds one resource's merged rules.
type table struct {
	exact    map[string]Access
	prefixes []prefixRule // longest first
}

type prefixRule struct {
	name   string
	access Access
}

// policyAuthorizer decides from merged rules, then the default policy.
type policyAuthorizer struct {
	tables      map[Resource]*table
	def         Default
	accessor    string
	fingerprint string // see Fingerprint
}

// Compile merges rules into an Authorizer, as Consul merges a token's
// policies: for one name, deny beats write beats list beats read; then
// an exact rule beats every prefix rule, and the longest prefix wins;
// with no rule the default policy decides (the acl resource is never
// granted by default, as in Consul). accessor is the token's, for
// denial messages (see Denied).
func Compile(rules []Rule, def Default, accessor string) Authorizer {
	a := &policyAuthorizer{tables: map[Resource]*table{}, def: def, accessor: accessor}
	prefixes := map[Resource]map[string]Access{}
	for _, r := range rules {
		t := a.tables[r.Resource]
		if t == nil {
			t = &table{exact: map[string]Access{}}
			a.tables[r.Resource] = t
			prefixes[r.Resource] = map[string]Access{}
		}
		m := t.exact
		if r.Prefix {
			m = prefixes[r.Resource]
		}
		m[r.Name] = merge(m[r.Name], r.Access)
	}
	for res, ps := range prefixes {
		t := a.tables[res]
		for name, acc := range ps {
			t.prefixes = append(t.prefixes, prefixRule{name, acc})
		}
		slices.SortFunc(t.prefixes, func(x, y prefixRule) int { return len(y.name) - len(x.name) })
	}
	a.fingerprint = a.rulesText()
	return a
}

// Fingerprint is equal for two Authorizers that grant the same (their
// merged rules and default), whoever holds them: what was built with
// one (DNS's answers) stands for the other.
func (a *policyAuthorizer) Fingerprint() string { return a.fingerprint }

// rulesText writes the merged rules out in a fixed order.
func (a *policyAuthorizer) rulesText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "default allow=%v\n", a.def)
	for _, res := range slices.Sorted(maps.Keys(a.tables)) {
		t := a.tables[res]
		for _, name := range slices.Sorted(maps.Keys(t.exact)) {
			fmt.Fprintf(&b, "%s %q %s\n", res, name, t.exact[name])
		}
		ps := slices.Clone(t.prefixes)
		slices.SortFunc(ps, func(x, y prefixRule) int { return strings.Compare(x.name, y.name) })
		for _, p := range ps {
			fmt.Fprintf(&b, "%s_prefix %q %s\n", res, p.name, p.access)
		}
	}
	return b.String()
}

// merge is Consul's takesPrecedenceOver: deny, then write, list, read.
func merge(old, nw Access) Access {
	if old == Deny || nw == Deny {
		return Deny
	}
	return max(old, nw)
}

// grants is Consul's enforce: what a rule's level allows.
func grants(rule, want Access) bool {
	switch rule {
	case Write:
		return true
	case List:
		return want == Read || want == List
	case Read:
		return want == Read
	}
	return false
}

func (a *policyAuthorizer) decide(r Resource, name string) Access {
	t := a.tables[r]
	if t == nil {
		return Unset
	}
	if acc, ok := t.exact[name]; ok {
		return acc
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(name, p.name) {
			return p.access
		}
	}
	return Unset
}

func (a *policyAuthorizer) byDefault(r Resource) bool {
	return r != ACL && bool(a.def)
}

func (a *policyAuthorizer) Allowed(r Resource, name string, want Access) bool {
	acc := a.decide(r, name)
	if acc == Unset {
		return a.byDefault(r)
	}
	return grants(acc, want)
}

// AllowedUnder is Consul's KeyWritePrefix, for any resource and level.
func (a *policyAuthorizer) AllowedUnder(r Resource, prefix string, want Access) bool {
	t := a.tables[r]
	if t == nil {
		return a.byDefault(r)
	}
	found := false
	for _, p := range t.prefixes {
		if strings.HasPrefix(prefix, p.name) {
			if !grants(p.access, want) {
				return false
			}
			found = true
			break
		}
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(p.name, prefix) && !grants(p.access, want) {
			return false
		}
	}
	for name, acc := range t.exact {
		if strings.HasPrefix(name, prefix) && !grants(acc, want) {
			return false
		}
	}
	return found || a.byDefault(r)
}

// AccessorID is the token's accessor, for denial messages.
func (a *policyAuthorizer) AccessorID() string { return a.accessor }

// DenyAll is the Authorizer that grants nothing (down_policy "deny").
func DenyAll() Authorizer { return Compile(nil, DefaultDeny, "") }

// management is AllowAll that knows its token.
type management struct {
	allowAll
	accessor string
}

func (m management) AccessorID() string { return m.accessor }

// PermissionDeniedError is Consul's denial, with its text: "Permission
// denied: token with AccessorID '…' lacks permission 'key:write' on …".
// errors.Is(err, ErrPermissionDenied) holds.
type PermissionDeniedError struct {
	Accessor string
	Resource Resource
	Access   Access
	Name     string // "" for unnamed resources
	Cause    string // replaces the generated text when set
}

func (e *PermissionDeniedError) Error() string {
	var b strings.Builder
	b.WriteString(ErrPermissionDenied.Error())
	if e.Cause != "" {
		return b.String() + ": " + e.Cause
	}
	switch e.Accessor {
	case "":
		b.WriteString(": provided token")
	case AnonymousAccessorID:
		b.WriteString(": anonymous token")
	default:
		fmt.Fprintf(&b, ": token with AccessorID '%s'", e.Accessor)
	}
	fmt.Fprintf(&b, " lacks permission '%s:%s'", e.Resource, e.Access)
	if e.Name != "" {
		fmt.Fprintf(&b, " on %q", e.Name)
	}
	if e.Accessor == AnonymousAccessorID {
		b.WriteString(". The anonymous token is used implicitly when a request does not specify a token.")
	}
	return b.String()
}

func (e *PermissionDeniedError) Is(target error) bool { return target == ErrPermissionDenied }

// Denied is the error for authz lacking want on r/name, with the token's
// accessor when the authorizer knows it.
func Denied(authz Authorizer, r Resource, name string, want Access) error {
	e := &PermissionDeniedError{Resource: r, Access: want, Name: name}
	if x, ok := authz.(interface{ AccessorID() string }); ok {
		e.Accessor = x.AccessorID()
	}
	return e
}

// BootstrapRequiredError wraps ErrNotFound while no token was ever made:
// "ACL system must be bootstrapped before making any requests that
// require authorization: ACL not found".
type BootstrapRequiredError struct{}

func (BootstrapRequiredError) Error() string {
	return "ACL system must be bootstrapped before making any requests that require authorization: " + ErrNotFound.Error()
}
func (BootstrapRequiredError) Unwrap() error { return ErrNotFound }
