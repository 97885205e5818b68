package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
)

// kvValueURL is where Consul documents kv_max_value_size; its 413 text
// points there.
const kvValueURL = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"

// kv serves /v1/kv/<key> as Consul's KVSEndpoint does.
func (h *handler) kv(c *call) error {
	switch c.r.Method {
	case http.MethodGet:
		if has(c.query, "keys") {
			return h.kvKeys(c)
		}
		return h.kvGet(c)
	case http.MethodPut:
		return h.kvPut(c)
	default:
		return h.kvDelete(c)
	}
}

// kvGet answers one entry, or with ?recurse every entry under the prefix,
// as a JSON array of DirEntry; ?raw answers one value's bytes. Nothing
// found is a 404 with an empty body that still carries the index, which
// blocking clients wait on.
func (h *handler) kvGet(c *call) error {
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	if has(c.query, "recurse") {
		if err := h.checkKeyList(c); err != nil {
			return err
		}
		m, entries, err := h.store.List(c.ctx, o, c.arg)
		if err != nil {
			return err
		}
		// Consul's KVS.List: entries the token cannot read are dropped
		// (and the ACL system's, always, silently: they are not data).
		all := len(entries)
		entries = skipReserved(entries, c.arg)
		cut := len(entries) < all
		entries = filterList(c, entries, func(e *kv.Entry) bool { return c.can(acl.Key, e.Key, acl.Read) })
		setMeta(c.w, m, o)
		if len(entries) == 0 {
			c.w.WriteHeader(http.StatusNotFound)
			return nil
		}
		if cut || c.w.Header().Get(hdrFilteredByACLs) != "" {
			return writeJSON(c.w, http.StatusOK, entries) // not the cached full list
		}
		return h.writeEntries(c, entries)
	}
	if c.arg == "" {
		return badRequest("Missing key name")
	}
	// Consul's KVS.Get: key read on the key.
	if err := c.checkKey(c.arg, acl.Read); err != nil {
		return err
	}
	m, e, err := h.store.Get(c.ctx, o, c.arg)
	if err != nil {
		return err
	}
	setMeta(c.w, m, o)
	if e == nil {
		c.w.WriteHeader(http.StatusNotFound)
		return nil
	}
	if has(c.query, "raw") {
		// Consul's headers for raw values: a stored value must never be
		// sniffed or run as a page by a browser.
		hd := c.w.Header()
		hd.Set("Content-Length", strconv.Itoa(len(e.Value)))
		hd.Set("Content-Type", "text/plain")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "sandbox")
		c.w.WriteHeader(http.StatusOK)
		_, _ = c.w.Write(e.Value)
		return nil
	}
	return writeJSON(c.w, http.StatusOK, []*kv.Entry{e})
}

// kvKeys answers the keys under a prefix, cut after ?separator. As in
// Consul, nothing under a non-empty prefix is a 404, and the root answers
// an empty list.
func (h *handler) kvKeys(c *call) error {
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	// Consul still honours its historic misspelling.
	sep := c.query.Get("seperator")
	if has(c.query, "separator") {
		sep = c.query.Get("separator")
	}
	if err := h.checkKeyList(c); err != nil {
		return err
	}
	m, keys, err := h.store.Keys(c.ctx, o, c.arg, sep)
	if err != nil {
		return err
	}
	// Consul's KVS.ListKeys: keys (and cut prefixes) the token cannot
	// read are dropped; the ACL system's never show.
	if reservedUnder(c.arg) || hidesInternal(c.arg) {
		keys = slices.DeleteFunc(keys, func(k string) bool { return reservedKey(k) || hiddenBy(c.arg, k) })
	}
	keys = filterList(c, keys, func(k string) bool { return c.can(acl.Key, k, acl.Read) })
	setMeta(c.w, m, o)
	if len(keys) == 0 && c.arg != "" {
		c.w.WriteHeader(http.StatusNotFound)
		return nil
	}
	if keys == nil {
		keys = []string{}
	}
	return writeJSON(c.w, http.StatusOK, keys)
}

// kvPut writes the body as the key's value: a plain set, or with ?cas, ?acquire
// or ?release a conditional write. It answers true or false.
func (h *handler) kvPut(c *call) error {
	if c.arg == "" {
		return badRequest("Missing key name")
	}
	if err := kv.ValidateKey(c.arg); err != nil {
		return err // before the body: a bad key costs no upload
	}
	if err := conflictingFlags(c, "cas", "acquire", "release"); err != nil {
		return err
	}
	op := kv.Op{Verb: kv.VerbSet, Key: c.arg}
	flags, _, err := uintParam(c.query, "flags", "flags are a uint64 the client chooses, e.g. ?flags=42")
	if err != nil {
		return err
	}
	op.Flags = flags
	if idx, ok, err := uintParam(c.query, "cas", "use the ModifyIndex of the entry, or 0 to write only if the key does not exist"); err != nil {
		return err
	} else if ok {
		op.Verb, op.Index = kv.VerbCAS, idx
	}
	if has(c.query, "acquire") {
		op.Verb, op.Session = kv.VerbLock, c.query.Get("acquire")
	}
	if has(c.query, "release") {
		op.Verb, op.Session = kv.VerbUnlock, c.query.Get("release")
	}
	if c.r.ContentLength > maxBodySize {
		return tooLarge("Request body(%d bytes) too large, max size: %d bytes. See %s.", c.r.ContentLength, maxBodySize, kvValueURL)
	}
	// Consul's kvsPreApply: key write on the key, for locks too.
	if err := c.checkKey(c.arg, acl.Write); err != nil {
		return err
	}
	op.Value, err = readBody(c, maxBodySize, "a KV value; see "+kvValueURL)
	if err != nil {
		return err
	}
	if len(op.Value) == 0 {
		op.Value = nil // Consul stores an empty body as a null value
	}
	ok, err := h.store.Apply(c.ctx, op)
	if err != nil {
		return err
	}
	// Consul answers a plain set with true whatever happened; only
	// conditional writes report their outcome.
	return writeOutcome(c.w, ok || op.Verb == kv.VerbSet)
}

// kvDelete deletes a key, a tree (?recurse), or a key at an index (?cas).
func (h *handler) kvDelete(c *call) error {
	if err := conflictingFlags(c, "recurse", "cas"); err != nil {
		return err
	}
	op := kv.Op{Verb: kv.VerbDelete, Key: c.arg}
	if has(c.query, "recurse") {
		op.Verb = kv.VerbDeleteTree
	} else if c.arg == "" {
		return badRequest("Missing key name")
	}
	if idx, ok, err := uintParam(c.query, "cas", "use the ModifyIndex of the entry to delete"); err != nil {
		return err
	} else if ok {
		op.Verb, op.Index = kv.VerbDeleteCAS, idx
	}
	if err := h.checkDelete(c, op); err != nil {
		return err
	}
	ok, err := h.store.Apply(c.ctx, op)
	if err != nil {
		return err
	}
	return writeOutcome(c.w, ok || op.Verb != kv.VerbDeleteCAS)
}

// The bodies of writeOutcome, shared: a Write only reads them.
var jsonTrue, jsonFalse = []byte("true"), []byte("false")

// writeOutcome answers a KV write with the JSON true or false, as
// writeJSON would, without encoding a bool on every write.
func writeOutcome(w http.ResponseWriter, ok bool) error {
	body := jsonFalse
	if ok {
		body = jsonTrue
	}
	writeJSONBytes(w, http.StatusOK, body)
	return nil
}

// checkKeyList is the check of ?recurse and ?keys: never a prefix inside
// the ACL system's keys; with EnableKeyListPolicy, "list" on the prefix
// (Consul's KeyList, only when acl.enable_key_list_policy is set).
func (h *handler) checkKeyList(c *call) error {
	if reservedKey(c.arg) {
		return errReserved(c.arg)
	}
	if h.keyListPolicy {
		return c.allow(acl.Key, c.arg, acl.List)
	}
	_, err := c.authorizer() // an unknown token is still "ACL not found"
	return err
}

// checkDelete is Consul's kvsPreApply for deletes: key write on the key,
// or for ?recurse on the prefix and everything under it
// (KeyWritePrefix). A recursive delete that would reach the ACL system's
// keys is refused while ACLs are on.
func (h *handler) checkDelete(c *call, op kv.Op) error {
	if op.Verb == kv.VerbDeleteTree {
		if reservedKey(op.Key) {
			return errReserved(op.Key)
		}
		// A prefix above the ACL system's keys (the root, "_cairn/"):
		// refused while ACLs are on; with ACLs off there is no ACL
		// system to protect and `consul kv delete -recurse` of the root
		// works as before.
		if reservedUnder(op.Key) && !c.aclOff() {
			return &permissionDenied{cause: fmt.Sprintf("a recursive delete of %q would delete the ACL system's keys under %s; delete the prefixes you mean one by one", op.Key, ReservedACLPrefix)}
		}
		return c.allowUnder(acl.Key, op.Key, acl.Write)
	}
	return c.checkKey(op.Key, acl.Write)
}

// skipReserved drops the ACL system's entries from a recursive read of
// prefix, and cairn's own keys from one that covers them only because it
// lists the root (hidesInternal).
func skipReserved(entries []*kv.Entry, prefix string) []*kv.Entry {
	if !reservedUnder(prefix) && !hidesInternal(prefix) {
		return entries
	}
	return slices.DeleteFunc(slices.Clone(entries), func(e *kv.Entry) bool {
		return reservedKey(e.Key) || hiddenBy(prefix, e.Key)
	})
}

// InternalPrefix holds cairn's own keys: the VIP table, prepared queries,
// gossip key bindings, crash-atomic txn records, the ACL system. Consul's
// KV has none, and tools list the root expecting only their own keys
// (consul/api's own txn test does), so a recursive read of a prefix
// shorter than this one ("", "_", ...) leaves them out; a read of
// "_cairn/" or below shows them (the ACL system's aside).
const InternalPrefix = "_cairn/"

// hidesInternal reports whether a listing of prefix leaves out InternalPrefix.
func hidesInternal(prefix string) bool {
	return len(prefix) < len(InternalPrefix) && strings.HasPrefix(InternalPrefix, prefix)
}

// hiddenBy reports whether a listing of prefix leaves out key.
func hiddenBy(prefix, key string) bool {
	return hidesInternal(prefix) && strings.HasPrefix(key, InternalPrefix)
}

// conflictingFlags refuses parameters that cannot be combined, with
// Consul's text.
func conflictingFlags(c *call, flags ...string) error {
	var found []string
	for _, f := range flags {
		if has(c.query, f) {
			found = append(found, "?"+f)
		}
	}
	if len(found) > 1 {
		return badRequest("Conflicting flags: %s; %s cannot be combined, use one of them", c.query.Encode(), strings.Join(found, " and "))
	}
	return nil
}
