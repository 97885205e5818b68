package kv

import "context"

// tokenKey is the context key of the caller's ACL token.
type tokenKey struct{}

// WithToken returns ctx carrying the caller's ACL token (Consul's
// X-Consul-Token). The token rides on the context so that whoever answers
// the request, this server or one a request is forwarded to, sees the
// same one. Nothing checks it yet: it is carried for ACLs to come.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, token)
}

// Token is the ACL token ctx carries, or "".
func Token(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}
