package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// onlyReader hides a reader's length, so the request is sent chunked
// without a Content-Length.
type onlyReader struct{ io.Reader }

// TestRefusals pins every refusal a client can provoke: the status, and
// a body that says what was wrong and with which value.
func TestRefusals(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "a", "1")

	big := bytes.Repeat([]byte("x"), 512*1024+1)
	var manyOps strings.Builder
	manyOps.WriteString("[")
	for i := range 129 {
		if i > 0 {
			manyOps.WriteString(",")
		}
		manyOps.WriteString(`{"KV":{"Verb":"get","Key":"a"}}`)
	}
	manyOps.WriteString("]")

	tests := []struct {
		name     string
		method   string
		path     string
		body     io.Reader
		wantCode int
		wantBody string // the body must contain this
	}{
		// Read parameters.
		{"wait not a duration", "GET", "/v1/kv/a?index=1&wait=soon", nil, 400, `Invalid wait time: ?wait="soon" is not a duration`},
		{"wait without unit", "GET", "/v1/kv/a?index=1&wait=10", nil, 400, `Invalid wait time: ?wait="10"`},
		{"index not a number", "GET", "/v1/kv/a?index=abc", nil, 400, `Invalid index: ?index="abc" is not an unsigned integer`},
		{"index negative", "GET", "/v1/kv/a?index=-1", nil, 400, `Invalid index: ?index="-1"`},
		{"stale and consistent", "GET", "/v1/kv/a?stale&consistent", nil, 400, "Cannot specify ?stale with ?consistent, conflicting semantics."},
		{"stale and consistent on sessions", "GET", "/v1/session/list?stale&consistent", nil, 400, "Cannot specify ?stale with ?consistent"},
		{"bad escape in query", "GET", "/v1/kv/a?x=%zz", nil, 400, "Invalid query string"},
		{"other datacenter", "GET", "/v1/kv/a?dc=dc2", nil, 500, `No path to datacenter: ?dc=dc2 is not this agent's datacenter "dc1"`},

		// KV.
		{"get without key", "GET", "/v1/kv/", nil, 400, "Missing key name"},
		{"put without key", "PUT", "/v1/kv/", nil, 400, "Missing key name"},
		{"delete without key", "DELETE", "/v1/kv/", nil, 400, "Missing key name"},
		{"cas not a number", "PUT", "/v1/kv/a?cas=x", nil, 400, `Invalid cas: ?cas="x" is not an unsigned integer; use the ModifyIndex`},
		{"delete cas not a number", "DELETE", "/v1/kv/a?cas=1.5", nil, 400, `Invalid cas: ?cas="1.5"`},
		{"flags not a number", "PUT", "/v1/kv/a?flags=-3", nil, 400, `Invalid flags: ?flags="-3"`},
		{"cas with acquire", "PUT", "/v1/kv/a?cas=1&acquire=s", nil, 400, "Conflicting flags: acquire=s&cas=1; ?cas and ?acquire cannot be combined, use one of them"},
		{"acquire with release", "PUT", "/v1/kv/a?acquire=s&release=s", nil, 400, "Conflicting flags"},
		{"recurse delete with cas", "DELETE", "/v1/kv/a?recurse&cas=1", nil, 400, "Conflicting flags"},
		{"acquire without session", "PUT", "/v1/kv/a?acquire=", nil, 400, "needs a session ID"},
		{"acquire with unknown session", "PUT", "/v1/kv/a?acquire=nope", nil, 400, `invalid session "nope"`},
		{"value too large", "PUT", "/v1/kv/a", bytes.NewReader(big), 413, "Request body(524289 bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."},
		{"chunked value too large", "PUT", "/v1/kv/a", onlyReader{bytes.NewReader(big)}, 413, "Request body too large, max size: 524288 bytes"},
		{"post", "POST", "/v1/kv/a", nil, 405, "method POST not allowed"},

		// Transactions.
		{"txn bad json", "PUT", "/v1/txn", strings.NewReader(`[{"KV":`), 400, "Failed to parse body: unexpected EOF"},
		{"txn not an array", "PUT", "/v1/txn", strings.NewReader(`{"KV":{}}`), 400, "Failed to parse body: json: cannot unmarshal object"},
		{"txn bad base64", "PUT", "/v1/txn", strings.NewReader(`[{"KV":{"Verb":"set","Key":"k","Value":"!!"}}]`), 400, "Failed to parse body: illegal base64 data"},
		{"txn empty op", "PUT", "/v1/txn", strings.NewReader(`[{}]`), 400, "operation 0 is empty"},
		{"txn check op without catalog", "PUT", "/v1/txn", strings.NewReader(`[{"Check":{"Verb":"get"}}]`), 500, "this agent has no service catalog"},
		{"txn too many ops", "PUT", "/v1/txn", strings.NewReader(manyOps.String()), 413, "Transaction contains too many operations (129 > 128)"},
		{"txn body too large", "PUT", "/v1/txn", bytes.NewReader(big), 413, "Request body too large, max size: 524288 bytes"},
		{"txn empty", "PUT", "/v1/txn", strings.NewReader(`[]`), 400, "the transaction has no operations"},
		{"txn get", "GET", "/v1/txn", nil, 405, "method GET not allowed"},

		// Sessions.
		{"session bad json", "PUT", "/v1/session/create", strings.NewReader(`{`), 400, "Request decode failed: unexpected end of JSON input"},
		{"session bad lock delay", "PUT", "/v1/session/create", strings.NewReader(`{"LockDelay":"soon"}`), 400, `Request decode failed: LockDelay "soon" is not a duration`},
		{"session lock delay object", "PUT", "/v1/session/create", strings.NewReader(`{"LockDelay":{}}`), 400, "Request decode failed: LockDelay {} is neither a duration string nor a number"},
		{"session lock delay too long", "PUT", "/v1/session/create", strings.NewReader(`{"LockDelay":"2m"}`), 400, "LockDelay 2m0s is out of range"},
		{"session bad behavior", "PUT", "/v1/session/create", strings.NewReader(`{"Behavior":"explode"}`), 400, `invalid Behavior "explode"`},
		{"session ttl too short", "PUT", "/v1/session/create", strings.NewReader(`{"TTL":"1s"}`), 400, `session TTL "1s" is out of range`},
		{"session get create", "GET", "/v1/session/create", nil, 405, "method GET not allowed"},
		{"destroy without id", "PUT", "/v1/session/destroy/", nil, 400, "Missing session"},
		{"renew without id", "PUT", "/v1/session/renew/", nil, 400, "Missing session"},
		{"info without id", "GET", "/v1/session/info/", nil, 400, "Missing session"},
		{"node without name", "GET", "/v1/session/node/", nil, 400, "Missing node name"},
		{"renew unknown", "PUT", "/v1/session/renew/no-such-id", nil, 404, "Session id 'no-such-id' not found"},
		{"destroy by get", "GET", "/v1/session/destroy/x", nil, 405, "method GET not allowed"},

		// Routing.
		{"unknown endpoint", "GET", "/v1/nope", nil, 404, "no API endpoint at /v1/nope"},
		{"unknown under session", "GET", "/v1/session/list/extra", nil, 404, ""},
		{"status leader put", "PUT", "/v1/status/leader", nil, 405, "method PUT not allowed"},
		{"agent self delete", "DELETE", "/v1/agent/self", nil, 405, "method DELETE not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ta.do(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if tt.wantCode == http.StatusMethodNotAllowed && !strings.HasPrefix(resp.Header.Get("Allow"), "OPTIONS,") {
				t.Errorf("%s %s: Allow = %q, want the allowed methods", tt.method, tt.path, resp.Header.Get("Allow"))
			}
		})
	}
	// Nothing above wrote anything.
	if p := ta.get(t, "a"); p == nil || string(p.Value) != "1" {
		t.Errorf("a = %+v after the refusals, want 1 unchanged", p)
	}
}

// TestBareFlags: like Consul, a flag counts whatever its value.
func TestBareFlags(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "f/a", "1")
	tests := []struct {
		path, want string
	}{
		{"/v1/kv/f/?keys", `["f/a"]`},
		{"/v1/kv/f/?keys=", `["f/a"]`},
		{"/v1/kv/f/?keys=false", `["f/a"]`},
		{"/v1/kv/f/a?raw", "1"},
		{"/v1/kv/f/a?raw=0", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := ta.do(t, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK || body != tt.want {
				t.Errorf("GET %s = %d %s, want 200 %s", tt.path, resp.StatusCode, body, tt.want)
			}
		})
	}
	resp, body := ta.do(t, http.MethodGet, "/v1/kv/f/?recurse=", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"Key":"f/a"`) {
		t.Errorf("GET ?recurse= = %d %s, want 200 with f/a", resp.StatusCode, body)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	tests := []struct {
		path, want string
	}{
		{"/v1/kv/a", "OPTIONS,GET,PUT,DELETE"},
		{"/v1/txn", "OPTIONS,PUT"},
		{"/v1/session/list", "OPTIONS,GET"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, _ := ta.do(t, http.MethodOptions, tt.path, nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Allow") != tt.want {
				t.Errorf("OPTIONS %s = %d Allow %q, want 200 Allow %q", tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.want)
			}
		})
	}
}
