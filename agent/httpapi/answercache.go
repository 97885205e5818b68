package httpapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// answerCache keeps the JSON of recent catalog answers (health and
// catalog reads of one service), keyed by what was asked and valid at the
// index they were read at: a service's index moves whenever anything in
// its answers can have changed, so equal index, equal bytes. Hot reads
// (templates, registrators, load balancers polling one service) then cost
// a memdb read and a copy, not a conversion and an encoding, as DNS
// answers already do.
type answerCache struct {
	mu    sync.Mutex
	m     map[answerID]cachedAnswer
	bytes int
}

type cachedAnswer struct {
	index    uint64
	entries  []*kv.Entry // for KV lists: the entries encoded (see getList)
	services []string    // for service answers: the names in it (see seesAll)
	body     []byte
}

// Bounds of the cache; past them, arbitrary entries make room.
const (
	answerCacheEntries = 4096
	answerCacheBytes   = 32 << 20
)

// lookup returns the cached answer of key when it was read at index.
func (a *answerCache) lookup(key answerID, index uint64) (cachedAnswer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	return e, ok && e.index == index
}

// getList returns the cached encoding of entries, a KV list. A list's
// index does not identify it (reaping a tombstone lowers it again), but
// its entries do: stored entries are never changed in place, so the same
// pointers are the same bytes.
func (a *answerCache) getList(key answerID, entries []*kv.Entry) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	if !ok || len(e.entries) != len(entries) {
		return nil
	}
	for i, x := range entries {
		if e.entries[i] != x {
			return nil
		}
	}
	return e.body
}

func (a *answerCache) putList(key answerID, entries []*kv.Entry, body []byte) {
	a.put(key, cachedAnswer{entries: slices.Clone(entries), body: body})
}

// put keeps e as key's answer, unless the cache has a newer one.
func (a *answerCache) put(key answerID, e cachedAnswer) {
	body, index := e.body, e.index
	if len(body) > answerCacheBytes/16 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[answerID]cachedAnswer{}
	}
	if old, ok := a.m[key]; ok {
		if old.index > index {
			return // a slower reader of an older index
		}
		a.bytes -= len(old.body)
		delete(a.m, key)
	}
	for k, e := range a.m {
		if len(a.m) < answerCacheEntries && a.bytes+len(body) <= answerCacheBytes {
			break
		}
		a.bytes -= len(e.body)
		delete(a.m, k)
	}
	a.m[key] = e
	a.bytes += len(body)
}

// answerID names an answer: the endpoint ("health", "catalog", "kv"),
// the service or prefix, and what of the filter changes the answer.
// A struct rather than one string, so that naming the answer of a plain
// read costs no allocation.
type answerID struct {
	kind, name string
	passing    bool
	more       string // ?tag= and ?node-meta=, encoded; "" without
}

// answerKey names the answer of kind for service name and filter f.
func answerKey(kind, name string, f catalog.Filter) answerID {
	id := answerID{kind: kind, name: name, passing: f.Passing}
	if len(f.Tags) == 0 && len(f.NodeMeta) == 0 {
		return id
	}
	var b strings.Builder
	for _, t := range f.Tags {
		b.WriteString("\x00t")
		b.WriteString(t)
	}
	keys := slices.Sorted(maps.Keys(f.NodeMeta))
	for _, k := range keys {
		b.WriteString("\x00m")
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(f.NodeMeta[k])
	}
	id.more = b.String()
	return id
}

// serviceAnswer answers a read of one service's instances (kind
// "health" or "catalog", read ServiceHealth or ServiceNodes, encode the
// answer's JSON value). When the cache holds the answer at the service's
// current index and the caller may see all of it, the instances are not
// even read: the index alone says the bytes are current.
func (h *handler) serviceAnswer(c *call, kind string, f catalog.Filter,
	read func(memdb.WatchSet, string, catalog.Filter) (uint64, []catalog.Instance),
	encode func([]catalog.Instance) any) error {
	key := answerKey(kind, c.arg, f)
	// One value the read fills in: the closure captures it with one
	// allocation, not one per variable.
	var got struct {
		insts []catalog.Instance
		index uint64
		body  []byte
	}
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		if shareable(c) {
			idx := h.catalog.ServiceIndex(ws, c.arg, f)
			if e, ok := h.answers.lookup(key, idx); ok && seesAll(c, e.services) {
				got.body, got.index = e.body, idx
				return idx
			}
		}
		got.body = nil
		got.index, got.insts = read(ws, c.arg, f)
		return got.index
	}); err != nil {
		return err
	}
	insts, index, body := got.insts, got.index, got.body
	if body != nil {
		writeJSONBytes(c.w, http.StatusOK, body)
		return nil
	}
	insts = filterInstances(c, insts)
	if !shareable(c) || c.w.Header()[hdrFilteredByACLs] != nil {
		// Answers cut by ?filter= or by the token's ACLs, or sorted by
		// ?near=, are the caller's own, not the service's: never cached.
		return writeFiltered(c, encode(insts))
	}
	v := encode(insts)
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T answer: %w", v, err)
	}
	h.answers.put(key, cachedAnswer{index: index, services: serviceNames(insts), body: body})
	writeJSONBytes(c.w, http.StatusOK, body)
	return nil
}

// shareable reports whether the request's answer is the service's own,
// the same for every caller who may see all of it: no ?filter= cuts it
// and no ?near= sorts it.
func shareable(c *call) bool {
	return c.filter == nil && !has(c.query, "near")
}

// seesAll reports whether the caller's token reads every instance of an
// answer of services (filterInstances would drop none): with ACLs off,
// or with read on every node and on each service named.
func seesAll(c *call, services []string) bool {
	if c.aclOff() {
		return true
	}
	a, err := c.authorizer()
	if err != nil || !a.AllowedUnder(acl.Node, "", acl.Read) {
		return false
	}
	for _, s := range services {
		if !a.Allowed(acl.Service, s, acl.Read) {
			return false
		}
	}
	return true
}

// serviceNames are the distinct service names of insts (one, unless
// the name was asked in another case than registered), which decide
// with the nodes who may read the answer.
func serviceNames(insts []catalog.Instance) []string {
	var out []string
	for _, in := range insts {
		if !slices.Contains(out, in.Service.Name) {
			out = append(out, in.Service.Name)
		}
	}
	return out
}

// writeEntries answers a KV list (?recurse) with its cached encoding
// when the entries are the same as when it was encoded.
func (h *handler) writeEntries(c *call, entries []*kv.Entry) error {
	key := answerID{kind: "kv", name: c.arg}
	body := h.answers.getList(key, entries)
	if body == nil {
		var err error
		if body, err = json.Marshal(entries); err != nil {
			return fmt.Errorf("encode KV answer: %w", err)
		}
		h.answers.putList(key, entries, body)
	}
	writeJSONBytes(c.w, http.StatusOK, body)
	return nil
}
