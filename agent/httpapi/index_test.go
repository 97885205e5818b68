package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// GET / is a page naming the agent and linking the API (a browser's
// first request), while every other unknown path stays a 404.
func TestIndexPage(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	tests := []struct {
		method, path string
		code         int
		contains     []string
	}{
		{http.MethodGet, "/", http.StatusOK, []string{"cairn agent test-node", `href="/v1/agent/self"`, `href="/ui/"`}},
		{http.MethodPut, "/", http.StatusMethodNotAllowed, []string{"method PUT not allowed"}},
		{http.MethodGet, "/index.html", http.StatusNotFound, []string{"no API endpoint at /index.html"}},
		{http.MethodPut, "/v1/nothing", http.StatusNotFound, []string{"no API endpoint at /v1/nothing"}},
	}
	for _, tt := range tests {
		resp, body := ta.do(t, tt.method, tt.path, nil)
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s: status %d, want %d (body %q)", tt.method, tt.path, resp.StatusCode, tt.code, body)
		}
		for _, s := range tt.contains {
			if !strings.Contains(body, s) {
				t.Errorf("%s %s: body lacks %q:\n%s", tt.method, tt.path, s, body)
			}
		}
	}
}
