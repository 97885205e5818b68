package catalog

import (
	"cmp"
	"crypto/ed25519"
	"slices"
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

// maxHeld bounds the origins whose records are held waiting for a key,
// heldPerOrigin the records kept for each (the newest versions): a
// forged record cannot push the real one out alone, and push/pull brings
// back anything dropped once the key is known.
const (
	maxHeld       = 1024
	heldPerOrigin = 4
)

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
	for origin, recs := range c.held {
		if _, ok := c.cfg.Keys.GossipKey(origin); !ok {
			continue
		}
		delete(c.held, origin)
		// Newest first: the first that verifies wins, the rest are stale.
		for _, r := range slices.Backward(recs) {
			c.receive(inMsg{buf: r.rec, signed: true}, members, g)
		}
	}
}

// hold keeps rec, origin's record at version, until origin's key is known.
func (c *Catalog) hold(origin string, version uint64, rec []byte) {
	recs, ok := c.held[origin]
	if !ok && len(c.held) >= maxHeld {
		c.log.Debug("too many catalog records wait for a key; dropped one (push/pull brings it again)", "origin", origin)
		return
	}
	i, found := slices.BinarySearchFunc(recs, version, func(h heldRecord, v uint64) int { return cmp.Compare(h.version, v) })
	if found {
		return
	}
	recs = slices.Insert(recs, i, heldRecord{version, rec})
	if len(recs) > heldPerOrigin {
		recs = recs[1:]
	}
	c.held[origin] = recs
	c.log.Debug("holding an agent's catalog record until its gossip key is known", "origin", origin, "version", version)
}

// heldRecord is a record waiting for its origin's key.
type heldRecord struct {
	version uint64
	rec     []byte
}
