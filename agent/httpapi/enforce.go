package httpapi

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
)

// ACL enforcement, as Consul's endpoints do it: the request's token is
// resolved once, on the first check (endpoints that check nothing, such as
// /v1/status/*, never resolve it, so an unknown token does not fail them,
// as in Consul); each endpoint checks next to its handler before it acts,
// and list answers drop what the token may not read and say so with
// X-Consul-Results-Filtered-By-ACLs: true.

// ReservedACLPrefix is where the ACL system keeps tokens, policies and
// roles in the KV store. Nothing under it is readable, listable or
// writable through /v1/kv or /v1/txn, whatever the token: secrets live
// there.
const ReservedACLPrefix = acl.Prefix

// hdrFilteredByACLs is Consul's header on a list answer the token's ACLs
// shortened.
const hdrFilteredByACLs = "X-Consul-Results-Filtered-By-Acls"

// anonymousAccessorID is Consul's accessor ID of the anonymous token.
const anonymousAccessorID = "00000000-0000-0000-0000-000000000002"

// accessorIDer is an Authorizer that knows its token's accessor ID, for
// Consul's longer 403 text. Optional.
type accessorIDer interface {
	AccessorID() string
}

// permissionDenied is Consul's acl.PermissionDeniedError: it says whose
// token lacks which permission on what.
type permissionDenied struct {
	accessor string // "" when unknown
	resource acl.Resource
	access   acl.Access
	name     string
	cause    string // instead of the rest, e.g. the reserved prefix
}

func (e *permissionDenied) Unwrap() error { return acl.ErrPermissionDenied }

// Error is Consul's text (acl/errors.go PermissionDeniedError.Error).
func (e *permissionDenied) Error() string {
	var b strings.Builder
	b.WriteString(acl.ErrPermissionDenied.Error())
	if e.cause != "" {
		b.WriteString(": " + e.cause)
		return b.String()
	}
	switch e.accessor {
	case anonymousAccessorID:
		b.WriteString(": anonymous token")
	case "":
		b.WriteString(": token")
	default:
		fmt.Fprintf(&b, ": token with AccessorID '%s'", e.accessor)
	}
	fmt.Fprintf(&b, " lacks permission '%s:%s'", e.resource, accessName(e.access))
	if e.name != "" {
		fmt.Fprintf(&b, " on %q", e.name)
	}
	if e.accessor == anonymousAccessorID {
		b.WriteString(". The anonymous token is used implicitly when a request does not specify a token.")
	}
	return b.String()
}

func accessName(a acl.Access) string {
	switch a {
	case acl.Read:
		return "read"
	case acl.List:
		return "list"
	case acl.Write:
		return "write"
	case acl.Deny:
		return "deny"
	}
	return "unset"
}

// tokenless reports whether the endpoint at route path works without
// resolving the token: Consul's status endpoints, the Connect CA roots,
// the datacenter list and the index page check nothing, and /v1/acl/*
// (the ACL system's own endpoints, acl.go) resolve tokens themselves.
func tokenless(path string) bool {
	switch path {
	case "/v1/status/leader", "/v1/status/peers", "/v1/agent/connect/ca/roots", "/v1/connect/ca/roots",
		"/v1/catalog/datacenters", "/v1/coordinate/datacenters", "/":
		return true
	}
	return strings.HasPrefix(path, "/v1/acl/")
}

// authorizer is the request's Authorizer, resolved on first use. With
// ACLs off it is AllowAll.
func (c *call) authorizer() (acl.Authorizer, error) {
	if c.authz != nil || c.authzErr != nil {
		return c.authz, c.authzErr
	}
	if c.h.acl == nil {
		c.authz = acl.AllowAll()
		return c.authz, nil
	}
	a, err := c.h.acl.Authorizer(c.ctx, c.token)
	if err != nil {
		if errors.Is(err, acl.ErrNotFound) {
			err = acl.ErrNotFound // Consul's body: "ACL not found"
		}
		c.authzErr = err
		return nil, err
	}
	c.authz = a
	return a, nil
}

// aclOff reports whether no check can fail: ACLs are off.
func (c *call) aclOff() bool { return c.h.acl == nil }

func (c *call) denied(r acl.Resource, name string, want acl.Access) error {
	e := &permissionDenied{resource: r, access: want, name: name}
	if c.token == "" {
		e.accessor = anonymousAccessorID
	} else if a, ok := c.authz.(accessorIDer); ok {
		e.accessor = a.AccessorID()
	}
	return e
}

// allow returns nil when the request's token grants want on r's name,
// else Consul's 403 (or "ACL not found" for an unknown token).
func (c *call) allow(r acl.Resource, name string, want acl.Access) error {
	a, err := c.authorizer()
	if err != nil {
		return err
	}
	if a.Allowed(r, name, want) {
		return nil
	}
	return c.denied(r, name, want)
}

// allowUnder is allow for want on prefix and everything under it
// (Consul's KeyWritePrefix, for recursive deletes).
func (c *call) allowUnder(r acl.Resource, prefix string, want acl.Access) error {
	a, err := c.authorizer()
	if err != nil {
		return err
	}
	if a.AllowedUnder(r, prefix, want) {
		return nil
	}
	return c.denied(r, prefix, want)
}

// can is allow as a filter predicate: false also when the token is
// unknown (the caller has already resolved it, so that cannot happen
// after a successful check).
func (c *call) can(r acl.Resource, name string, want acl.Access) bool {
	a, err := c.authorizer()
	return err == nil && a.Allowed(r, name, want)
}

// markFiltered sets Consul's header saying the answer lost entries to
// the token's ACLs. Call before the answer is written.
func (c *call) markFiltered() {
	c.w.Header()[hdrFilteredByACLs] = []string{"true"}
}

// filterList keeps the elements of in that keep allows, in place, and
// marks the answer when it dropped any.
func filterList[T any](c *call, in []T, keep func(T) bool) []T {
	if c.aclOff() {
		return in
	}
	out := in[:0:0]
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	if len(out) != len(in) {
		c.markFiltered()
	}
	return out
}

// reservedKey reports whether key (or, for a prefix, anything under it
// that a recursive operation reaches) is the ACL system's.
func reservedKey(key string) bool {
	return strings.HasPrefix(key, ReservedACLPrefix)
}

// reservedUnder reports whether a recursive operation on prefix would
// reach the ACL system's keys.
func reservedUnder(prefix string) bool {
	return strings.HasPrefix(ReservedACLPrefix, prefix) || reservedKey(prefix)
}

// errReserved is the 403 for the ACL system's own keys.
func errReserved(key string) error {
	return &permissionDenied{cause: fmt.Sprintf("%q is under %s, where the ACL system keeps its tokens and policies; use /v1/acl/* instead", key, ReservedACLPrefix)}
}

// checkKey is the check of a single-key KV operation: never the reserved
// keys, else want on the key.
func (c *call) checkKey(key string, want acl.Access) error {
	if reservedKey(key) {
		return errReserved(key)
	}
	return c.allow(acl.Key, key, want)
}
