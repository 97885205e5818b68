package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
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
	m     map[string]cachedAnswer
	bytes int
}

type cachedAnswer struct {
	index   uint64
	entries []*kv.Entry // for KV lists: the entries encoded (see getList)
	body    []byte
}

// Bounds of the cache; past them, arbitrary entries make room.
const (
	answerCacheEntries = 4096
	answerCacheBytes   = 32 << 20
)

func (a *answerCache) get(key string, index uint64) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.m[key]; ok && e.index == index {
		return e.body
	}
	return nil
}

// getList returns the cached encoding of entries, a KV list. A list's
// index does not identify it (reaping a tombstone lowers it again), but
// its entries do: stored entries are never changed in place, so the same
// pointers are the same bytes.
func (a *answerCache) getList(key string, entries []*kv.Entry) []byte {
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

func (a *answerCache) putList(key string, entries []*kv.Entry, body []byte) {
	a.put(key, 0, body)
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.m[key]; ok {
		e.entries = slices.Clone(entries)
		a.m[key] = e
	}
}

func (a *answerCache) put(key string, index uint64, body []byte) {
	if len(body) > answerCacheBytes/16 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]cachedAnswer{}
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
	a.m[key] = cachedAnswer{index: index, body: body}
	a.bytes += len(body)
}

// answerKey names an answer: the endpoint, the service and the filter.
func answerKey(kind, name string, f catalog.Filter) string {
	var b strings.Builder
	b.WriteString(kind)
	b.WriteByte(0)
	b.WriteString(name)
	b.WriteByte(0)
	b.WriteString(strconv.FormatBool(f.Passing))
	for _, t := range f.Tags {
		b.WriteString("\x00t")
		b.WriteString(t)
	}
	if len(f.NodeMeta) > 0 {
		keys := make([]string, 0, len(f.NodeMeta))
		for k := range f.NodeMeta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString("\x00m")
			b.WriteString(k)
			b.WriteByte(0)
			b.WriteString(f.NodeMeta[k])
		}
	}
	return b.String()
}

// writeCached answers with the cached encoding of key at index, or with
// build()'s, which it caches. Answers cut by ?filter= or sorted by
// ?near= are not cached.
func (h *handler) writeCached(c *call, key string, index uint64, build func() any) error {
	if c.filter != nil || has(c.query, "near") || c.w.Header()[hdrFilteredByACLs] != nil {
		// Answers shortened by ?filter= or by the token's ACLs are the
		// caller's own, not the service's: never cached.
		return writeFiltered(c, build())
	}
	body := h.answers.get(key, index)
	if body == nil {
		var err error
		v := build()
		if body, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encode %T answer: %w", v, err)
		}
		h.answers.put(key, index, body)
	}
	c.w.Header()["Content-Type"] = []string{"application/json"}
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(body)
	return nil
}

// writeEntries answers a KV list (?recurse) with its cached encoding
// when the entries are the same as when it was encoded.
func (h *handler) writeEntries(c *call, entries []*kv.Entry) error {
	key := "kv\x00" + c.arg
	body := h.answers.getList(key, entries)
	if body == nil {
		var err error
		if body, err = json.Marshal(entries); err != nil {
			return fmt.Errorf("encode KV answer: %w", err)
		}
		h.answers.putList(key, entries, body)
	}
	c.w.Header()["Content-Type"] = []string{"application/json"}
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(body)
	return nil
}
