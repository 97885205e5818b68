package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/cairn-dev/cairn/agent/forward"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/kv"
)

// Gossip identity (docs/gossip-security.md): every agent has a long-term
// ed25519 key in its data dir and signs the records of its catalog state
// with it; the binding of its node name to the public key is written to
// the Raft store by the agent itself, first binding wins, and every agent
// reads the bindings to check the records it receives. A record whose
// origin has no binding yet is held by the catalog, not applied.

// gossipKeyFile is the agent's private key in its data dir: the 32-byte
// ed25519 seed, base64, mode 0600.
const gossipKeyFile = "gossip-identity.key"

// GossipKeyPrefix is the KV prefix of the bindings: one key per node,
// <prefix><lower-case node name>, whose value is "ed25519:" and the
// public key in base64. Deleting one (`cairn kv delete`, an operator's
// action) lets that name bind a new key.
const GossipKeyPrefix = forward.GossipKeyPrefix

const gossipKeyScheme = "ed25519:"

// loadGossipKey reads the agent's key from dir, creating it on first use.
func loadGossipKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, gossipKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("gossip identity key %s is damaged (want %d bytes of base64); remove it to make a new one, then clear this node's old binding with `cairn kv delete "+GossipKeyPrefix+"<node>` (docs/gossip-security.md)", path, ed25519.SeedSize)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read the gossip identity key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("make a gossip identity key: %w", err)
	}
	// Durably, as node-id: a plain write left the file empty when ext4
	// went read-only after a disk error, and the agent could not start
	// again (TestSystemDiskReadOnlyAndIOError).
	if err := writeDurably(path, []byte(base64.StdEncoding.EncodeToString(seed)+"\n")); err != nil {
		return nil, fmt.Errorf("write the gossip identity key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func encodeGossipKey(pub ed25519.PublicKey) []byte {
	return []byte(gossipKeyScheme + base64.StdEncoding.EncodeToString(pub))
}

func decodeGossipKey(v []byte) (ed25519.PublicKey, bool) {
	s, ok := strings.CutPrefix(string(v), gossipKeyScheme)
	if !ok {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

// gossipKeyStore is what gossipKeys needs of the Raft store (the
// forwarding router on every agent).
type gossipKeyStore interface {
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)
}

// gossipMembers is what gossipKeys needs of membership.
type gossipMembers interface {
	Member(name string) (membership.Member, bool)
	HasServers() bool
}

// gossipKeys is the table of bindings (catalog.Keys) and the loop that
// keeps it current and binds this agent's own name.
type gossipKeys struct {
	node    string // lower case
	pub     ed25519.PublicKey
	store   gossipKeyStore
	members gossipMembers
	changed func() // the catalog's KeysChanged
	log     *slog.Logger
	fast    bool

	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey // from the Raft store
	pins map[string]ed25519.PublicKey // without servers: first seen in a member's meta
}

// GossipKey implements catalog.Keys. With servers in the cluster the
// binding in the Raft store is the only one. A cluster without servers
// (cairn's catalog needs none) has no such store: there the key is the
// one the member announced in its node meta when this agent first saw
// it, pinned for as long as this agent runs (trust on first use; see
// docs/gossip-security.md for what that does not cover).
func (g *gossipKeys) GossipKey(node string) (ed25519.PublicKey, bool) {
	name := strings.ToLower(node)
	if g.members.HasServers() {
		g.mu.RLock()
		defer g.mu.RUnlock()
		k, ok := g.keys[name]
		return k, ok
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if k, ok := g.pins[name]; ok {
		return k, true
	}
	m, ok := g.members.Member(node)
	if !ok || m.Meta.GossipKey == "" {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(m.Meta.GossipKey)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	g.pins[name] = b
	return b, true
}

// run reads the bindings with one blocking list at a time and writes this
// agent's own when it is missing. It returns nil when ctx is done.
func (g *gossipKeys) run(ctx context.Context) error {
	var (
		index    uint64
		backoff  time.Duration
		failing  bool
		conflict string // the other key this name is bound to, reported once
	)
	minBackoff, maxBackoff := 250*time.Millisecond, 5*time.Second
	if g.fast {
		minBackoff, maxBackoff = 50*time.Millisecond, time.Second
	}
	wait := func() bool {
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		m, entries, err := g.store.List(ctx, kv.QueryOptions{MinIndex: index, Stale: true}, GossipKeyPrefix)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !failing && backoff >= maxBackoff {
				g.log.Warn("cannot read the gossip key bindings from the servers; records of agents not seen yet are held until they can be checked", "err", err)
				failing = true
			}
			if !wait() {
				return nil
			}
			continue
		}
		failing = false
		keys := make(map[string]ed25519.PublicKey, len(entries))
		for _, e := range entries {
			name := strings.TrimPrefix(e.Key, GossipKeyPrefix)
			if k, ok := decodeGossipKey(e.Value); ok && name != "" {
				keys[name] = k
			}
		}
		g.mu.Lock()
		g.keys = keys
		g.mu.Unlock()
		g.changed()

		own, bound := keys[g.node]
		switch {
		case bound && bytes.Equal(own, g.pub):
			conflict = ""
		case bound:
			if k := base64.StdEncoding.EncodeToString(own); k != conflict {
				conflict = k
				g.log.Error("this node's name is bound to another gossip key: the other agents ignore its catalog records. If this agent's data dir was lost, or another agent used this name before, clear the old binding with `cairn kv delete "+GossipKeyPrefix+g.node+"` and this agent binds its key again",
					"node", g.node, "binding", GossipKeyPrefix+g.node)
			}
		default:
			// First binding wins: only where none exists.
			key := GossipKeyPrefix + g.node
			_, _, txnErrs, err := g.store.Txn(ctx, kv.QueryOptions{}, []kv.Op{
				{Verb: kv.VerbCheckNotExists, Key: key},
				{Verb: kv.VerbSet, Key: key, Value: encodeGossipKey(g.pub)},
			})
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				g.log.Debug("could not bind this node's gossip key yet; retrying", "err", err)
			case len(txnErrs) == 0:
				g.log.Info("bound this node's name to its gossip key", "node", g.node, "binding", key)
			}
			// Read again at once (the new binding, or who won).
			index = 0
			if err != nil && !wait() {
				return nil
			}
			continue
		}
		backoff = 0
		if m.Index < index {
			index = 0 // the store went back (a restore): read it whole again
			continue
		}
		index = m.Index
	}
}

// gossipIdentity loads this agent's gossip key and makes the table of
// bindings the catalog checks records against.
func (w *wiring) gossipIdentity() (*gossipKeys, ed25519.PrivateKey, error) {
	priv, err := loadGossipKey(w.dataDir)
	if err != nil {
		return nil, nil, err
	}
	pub := priv.Public().(ed25519.PublicKey)
	if w.agent.unsignedGossip {
		priv = nil
	}
	return &gossipKeys{
		node:    strings.ToLower(w.cfg.NodeName),
		pub:     pub,
		store:   w.routerFor().Internal(), // the agent's own (forward.GossipKeyPrefix): its token, not a caller's
		members: w.ml,
		changed: func() {},
		log:     w.log,
		fast:    w.fast,
		keys:    map[string]ed25519.PublicKey{},
		pins:    map[string]ed25519.PublicKey{},
	}, priv, nil
}

// catalogKeys is what the catalog checks records with: nil when this
// agent does not sign (then it checks nothing either).
func catalogKeys(k *gossipKeys, signer ed25519.PrivateKey) catalog.Keys {
	if signer == nil {
		return nil
	}
	return k
}
