package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// maxBodySize bounds request bodies: Consul's kv_max_value_size and
// txn_max_req_len default (512 KiB, raft's suggested entry size).
const maxBodySize = 512 * 1024

// parseQuery parses the query string. Consul's own parser drops nothing
// silently either: a malformed escape is refused.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("Invalid query string %q: %v; escape reserved characters with %%XX", raw, err)
	}
	return q, nil
}

// has reports whether a flag parameter is present. Like Consul
// (`_, ok := query["recurse"]`), any value counts: ?recurse, ?recurse=
// and even ?recurse=false all turn it on.
func has(q url.Values, name string) bool {
	_, ok := q[name]
	return ok
}

// uintParam parses an unsigned integer parameter; ok is false when absent.
// hint says what a valid value is.
func uintParam(q url.Values, name, hint string) (v uint64, ok bool, err error) {
	if !has(q, name) {
		return 0, false, nil
	}
	s := q.Get(name)
	v, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, badRequest("Invalid %s: ?%s=%q is not an unsigned integer; %s", name, name, s, hint)
	}
	return v, true, nil
}

// readOptions parses Consul's read parameters: ?index and ?wait for a
// blocking query, ?stale and ?consistent for the consistency mode. The
// texts start with Consul's ("Invalid wait time", "Invalid index").
func readOptions(q url.Values) (kv.QueryOptions, error) {
	var o kv.QueryOptions
	if w := q.Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil {
			return o, badRequest("Invalid wait time: ?wait=%q is not a duration; give a unit, e.g. ?wait=10s or ?wait=60000ms", w)
		}
		o.MaxWait = d
	}
	if q.Get("index") != "" {
		idx, _, err := uintParam(q, "index", "use the X-Consul-Index of an earlier answer")
		if err != nil {
			return o, err
		}
		o.MinIndex = idx
	}
	o.Stale = has(q, "stale")
	o.Consistent = has(q, "consistent")
	if o.Stale && o.Consistent {
		return o, badRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
	}
	return o, nil
}

// consistency names the mode a read was served in, for
// X-Consul-Effective-Consistency.
func consistency(o kv.QueryOptions) string {
	switch {
	case o.Consistent:
		return "consistent"
	case o.Stale:
		return "stale"
	}
	return "leader"
}

// setMeta writes the headers of a read answer. The official client stops
// parsing them when X-Consul-LastContact is missing, and an index of 0
// would make blocking clients spin, so both are always set.
func setMeta(w http.ResponseWriter, m kv.QueryMeta, o kv.QueryOptions) {
	// The keys are already in canonical form (textproto's), so they are
	// assigned directly: Header.Set would canonicalize them again on every
	// read, a measurable share of a KV GET.
	h := w.Header()
	h[hdrIndex] = []string{strconv.FormatUint(max(m.Index, 1), 10)}
	if ms := max(m.LastContact, 0).Milliseconds(); ms == 0 {
		h[hdrLastContact] = hdrValueZero
	} else {
		h[hdrLastContact] = []string{strconv.FormatInt(ms, 10)}
	}
	h[hdrKnownLeader] = hdrValueFalse
	if m.KnownLeader {
		h[hdrKnownLeader] = hdrValueTrue
	}
	h[hdrConsistency] = hdrValueConsistency[consistency(o)]
	if m.ResultsFilteredByACLs {
		// A server trimmed the answer to the token's view (forward's
		// guard); the handler's own filters set it too.
		h[hdrFilteredByACLs] = []string{"true"}
	}
}

// Consul's response headers, in the canonical form Go's net/http uses
// (which is what Header.Get looks up; clients match them case-blind).
const (
	hdrIndex       = "X-Consul-Index"
	hdrLastContact = "X-Consul-Lastcontact"
	hdrKnownLeader = "X-Consul-Knownleader"
	hdrConsistency = "X-Consul-Effective-Consistency"
)

// Header values every answer sends, shared by all of them: net/http
// only reads them, and Header.Add appends to a copy (their capacity is
// their length), so sharing them saves allocations on every read.
var (
	hdrValueZero        = []string{"0"}
	hdrValueTrue        = []string{"true"}
	hdrValueFalse       = []string{"false"}
	hdrValueJSON        = []string{"application/json"}
	hdrValueConsistency = map[string][]string{"leader": {"leader"}, "consistent": {"consistent"}, "stale": {"stale"}}
)

// writeJSON answers 200 (or code) with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T answer: %w", v, err)
	}
	writeJSONBytes(w, code, buf)
	return nil
}

// writeJSONBytes answers code with body, encoded JSON. The length goes
// in the header: without it, net/http sends a body past 2 KB chunked,
// which costs a larger answer and one more write to the socket for
// every answer past its 4 KB buffer (a KV listing, a service's health).
func writeJSONBytes(w http.ResponseWriter, code int, body []byte) {
	jsonHeader(w, len(body))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// jsonHeader sets the headers of a JSON answer of n bytes.
func jsonHeader(w http.ResponseWriter, n int) {
	h := w.Header()
	h["Content-Type"] = hdrValueJSON
	h["Content-Length"] = []string{strconv.Itoa(n)}
}

// readAll reads the body r of declared length n (-1: unknown) into a
// buffer of that size, where io.ReadAll would start at 512 bytes and
// grow: a KV value is mostly small, and the spare bytes of every PUT's
// buffer are garbage to collect. net/http ends a body at its declared
// length, and reports one cut short.
func readAll(r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, n)
	m, err := io.ReadFull(r, b)
	return b[:m], err
}

// readBody reads the whole request body, refusing more than limit bytes
// with 413; what says what the body is, for the message.
func readBody(c *call, limit int64, what string) ([]byte, error) {
	if c.r.ContentLength > limit {
		return nil, tooLarge("Request body(%d bytes) too large, max size: %d bytes (%s)", c.r.ContentLength, limit, what)
	}
	if c.r.Body == nil {
		return nil, nil
	}
	body, err := readAll(http.MaxBytesReader(c.w, c.r.Body, limit), c.r.ContentLength)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge("Request body too large, max size: %d bytes (%s)", limit, what)
	}
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return body, nil
}
