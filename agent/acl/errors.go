package acl

import (
	"context"
	"errors"
)

// The errors every enforcing endpoint answers with Consul's texts and
// status 403 (the official client and consul-template match the texts).
var (
	// ErrNotFound: the request's token is not known ("ACL not found").
	ErrNotFound = errors.New("ACL not found")
	// ErrPermissionDenied: the token is known but may not do this.
	ErrPermissionDenied = errors.New("Permission denied")
)

// Resolver turns a request's secret ID into what it may do. "" is the
// anonymous token. An unknown secret is ErrNotFound. The agent provides
// one when ACLs are enabled; nil means ACLs are off. On client agents
// resolving may ask the servers (cached, as Consul's token_ttl), so it
// takes the request's context.
type Resolver interface {
	Authorizer(ctx context.Context, secret string) (Authorizer, error)
}
