package logging

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
)

// Request IDs name one HTTP request across the agents it touches: the
// agent that took it makes one (or keeps the caller's X-Request-ID), it
// rides on the request's context, travels with a forwarded call to the
// server that serves it, and every log line about the request carries it
// as request_id. Consul has no such header; X-Request-ID is the one load
// balancers and proxies (nginx's $request_id, Envoy) already pass on.

// RequestIDHeader is the HTTP header a request ID comes in and goes out in.
const RequestIDHeader = "X-Request-Id"

// RequestIDKey is the log attribute that carries a request ID.
const RequestIDKey = "request_id"

type requestIDKey struct{}

// WithRequestID returns ctx carrying id; an empty id returns ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request ID ctx carries, "" for none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID returns a fresh random ID: 16 hex digits.
func NewRequestID() string {
	var b [8]byte
	u := rand.Uint64()
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	var d [16]byte
	hex.Encode(d[:], b[:])
	return string(d[:]) // one allocation; EncodeToString makes two
}

// maxRequestIDLen bounds a caller's ID: longer ones are replaced.
const maxRequestIDLen = 128

// AcceptRequestID returns the caller's ID when it is fit to log (1 to
// 128 characters of letters, digits and -_.:/+=), otherwise a new one,
// so that a header cannot forge or break a log line.
func AcceptRequestID(incoming string) string {
	if incoming == "" || len(incoming) > maxRequestIDLen {
		return NewRequestID()
	}
	for i := 0; i < len(incoming); i++ {
		switch c := incoming[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=':
		default:
			return NewRequestID()
		}
	}
	return incoming
}
