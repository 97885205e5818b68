package catalog

import (
	"crypto/ed25519"
	"time"
)

// Signed records. Each agent signs the records of its own state with its
// long-term ed25519 key (Config.SigningKey): the signature covers the
// whole record (origin, version and content) and travels with it, so a
// record relayed by gossip or carried in another agent's push/pull is
// checked exactly like one sent by its origin. A receiver with Keys
// applies a record only when it verifies against the key bound to the
// record's origin; until a binding is known the record is held, not
// applied. How a name is bound to a key is the agent's business (see
// docs/gossip-security.md): the catalog only asks Keys.
//
// Versions are bounded too: a version is the origin's clock in ms shifted
// left by 20 bits, so one whose clock part is more than MaxVersionAhead
// ahead of this agent's clock is refused, signed or not. A forged or
// corrupt huge version can then never shadow the owner's later ones.

// sigSize is the length of the signature that ends a signed record.
const sigSize = ed25519.SignatureSize

// MaxVersionAhead is how far ahead of this agent's clock a record's
// version may be: the clock skew between agents it tolerates.
const MaxVersionAhead = time.Hour

// maxHeld bounds the origins whose records are held waiting for a key.
const maxHeld = 1024

// Keys gives the public key each agent signs its records with. Safe for
// concurrent use; called from the catalog's receive goroutine.
type Keys interface {
	// GossipKey returns the key bound to the agent named node (compared
	// without regard to case); ok is false while none is known.
	GossipKey(node string) (key ed25519.PublicKey, ok bool)
}

// KeysChanged tells the catalog that Keys may know new bindings: the
// records held for want of a key are tried again. It never blocks.
func (c *Catalog) KeysChanged() {
	select {
	case c.keysCh <- struct{}{}:
	default:
	}
}

// splitSigned returns a signed record's signed part and its signature.
func splitSigned(rec []byte) (signed, sig []byte, ok bool) {
	if len(rec) <= sigSize {
		return nil, nil, false
	}
	return rec[:len(rec)-sigSize], rec[len(rec)-sigSize:], true
}

// versionTooFar reports whether version is beyond MaxVersionAhead of now.
func versionTooFar(version uint64, now time.Time) bool {
	return version>>20 > uint64(now.Add(MaxVersionAhead).UnixMilli())
}

// retryHeld applies the held records whose origin has a key now.
func (c *Catalog) retryHeld(members map[string]MemberStatus, g Gossip) {
	for origin, rec := range c.held {
		if _, ok := c.cfg.Keys.GossipKey(origin); !ok {
			continue
		}
		delete(c.held, origin)
		c.receive(inMsg{buf: rec, signed: true}, members, g)
	}
}

// hold keeps rec, origin's record at version, until origin's key is known.
func (c *Catalog) hold(origin string, version uint64, rec []byte) {
	if old, ok := c.held[origin]; ok {
		if body, _, ok := splitSigned(old); ok {
			if _, v, _, err := recordHeader(body); err == nil && v >= version {
				return
			}
		}
	} else if len(c.held) >= maxHeld {
		c.log.Debug("too many catalog records wait for a key; dropped one (push/pull brings it again)", "origin", origin)
		return
	}
	c.held[origin] = rec
	c.log.Debug("holding an agent's catalog record until its gossip key is known", "origin", origin, "version", version)
}
