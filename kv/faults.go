package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors of faults: what a caller is told when a request could not be
// answered, so that it knows whether to retry, read first, or fix
// something.
var (
	// ErrOutcomeUnknown: a write was handed to Raft (or sent to a
	// server) but its result never came back: leadership was lost after
	// the entry was appended, or the connection broke after sending. It
	// may have been applied; the caller must read before retrying. It is
	// never ErrNoLeader: that one promises nothing was written.
	ErrOutcomeUnknown = errors.New("the write may have been applied; read before retrying")
	// ErrTooManyQueries: this server already parks as many blocking
	// queries as Config.MaxBlockingQueries allows.
	ErrTooManyQueries = errors.New("too many blocking queries")
)

// writeIDKey is the context key of a write's ID.
type writeIDKey struct{}

// WithWriteID returns ctx carrying id, the name of one logical write. A
// write sent again under the same ID (after a broken connection or a lost
// leader) is applied at most once: the state machine remembers the
// results of recent IDs and answers a repeat with the first result. The
// agent that took the request names it; forwarding carries the ID.
func WithWriteID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, writeIDKey{}, id)
}

// WriteID is the write ID ctx carries, or "".
func WriteID(ctx context.Context) string {
	id, _ := ctx.Value(writeIDKey{}).(string)
	return id
}

// MaxKeyLength is the longest key accepted, in bytes. Consul bounds keys
// only by its request size; a key is metadata, so cairn keeps it well
// under the value limit, which a long key must not get around.
const MaxKeyLength = 2048

// ValidateKey refuses keys that no Consul client could read back
// cleanly: longer than MaxKeyLength, not UTF-8, or with NUL or other
// control characters (a newline in a key breaks every line-based tool
// and template). The empty key is left to the caller: some operations
// (a tree delete, a list of everything) take it.
func ValidateKey(key string) error {
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: key is %d bytes long; keys may be at most %d bytes (store long data in the value)", ErrInvalidRequest, len(key), MaxKeyLength)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidRequest, key)
	}
	if i := strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }); i >= 0 {
		return fmt.Errorf("%w: key %q has a control character (byte %d, %U); keys may not contain NUL, newlines or other control characters", ErrInvalidRequest, key, i, []rune(key[i:])[0])
	}
	return nil
}
