package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestPrettyAnswers: ?pretty indents a JSON answer by four spaces and
// ends it with a newline, as Consul's marshalJSON does, with a
// Content-Length that fits; answers that are not JSON are untouched.
func TestPrettyAnswers(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "app/a", "1")
	ta.put(t, "app/b", "<2>")

	for _, tc := range []struct {
		method, path, body string
		wantCode           int
		json               bool
	}{
		{"GET", "/v1/kv/app/a", "", http.StatusOK, true},
		{"GET", "/v1/kv/app/?recurse", "", http.StatusOK, true}, // from the listing cache
		{"GET", "/v1/kv/app/?keys", "", http.StatusOK, true},
		{"PUT", "/v1/kv/app/c", "3", http.StatusOK, true}, // "true\n"
		{"GET", "/v1/status/leader", "", http.StatusOK, true},
		{"GET", "/v1/kv/app/b?raw", "", http.StatusOK, false},
		{"GET", "/v1/kv/app/missing", "", http.StatusNotFound, false},
		{"PUT", "/v1/kv/app/d?cas=x", "4", http.StatusBadRequest, false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			_, compact := ta.do(t, tc.method, tc.path, strings.NewReader(tc.body))
			sep := "?"
			if strings.Contains(tc.path, "?") {
				sep = "&"
			}
			resp, got := ta.do(t, tc.method, tc.path+sep+"pretty", strings.NewReader(tc.body))
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status = %d; want %d (body %q)", resp.StatusCode, tc.wantCode, got)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(got)) {
				t.Errorf("Content-Length = %s; the body has %d bytes", cl, len(got))
			}
			if !tc.json {
				if got != compact {
					t.Errorf("?pretty changed an answer that is not JSON: %q; without it %q", got, compact)
				}
				return
			}
			var want bytes.Buffer
			if err := json.Indent(&want, []byte(compact), "", "    "); err != nil {
				t.Fatalf("the answer without ?pretty is not JSON: %q", compact)
			}
			want.WriteByte('\n')
			if got != want.String() {
				t.Errorf("?pretty answer =\n%s\nwant\n%s", got, want.String())
			}
			if tc.method == "GET" && strings.Count(got, "\n") < 2 && strings.HasPrefix(got, "[") {
				t.Errorf("?pretty answer %q is not indented", got)
			}
		})
	}
}
