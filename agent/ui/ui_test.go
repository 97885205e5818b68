package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api "+r.URL.Path) })
	srv := httptest.NewServer(Handler(api))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method, path string
		accept       string
		code         int
		location     string
		body         string
	}{
		{"GET", "/", "text/html,application/xhtml+xml", http.StatusFound, "/ui/", ""},
		{"GET", "/", "*/*", http.StatusOK, "", "api /"},
		{"GET", "/ui", "", http.StatusMovedPermanently, "/ui/", ""},
		{"GET", "/ui/", "", http.StatusOK, "", "<title>cairn</title>"},
		{"GET", "/ui/app.js", "", http.StatusOK, "", "blocking queries"},
		{"GET", "/ui/style.css", "", http.StatusOK, "", "font-family"},
		{"GET", "/ui/nope.js", "", http.StatusNotFound, "", ""},
		{"PUT", "/ui/", "", http.StatusMethodNotAllowed, "", "read with GET"},
		{"GET", "/v1/kv/x", "", http.StatusOK, "", "api /v1/kv/x"},
		{"PUT", "/", "", http.StatusOK, "", "api /"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.accept, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || resp.Header.Get("Location") != tt.location || !strings.Contains(string(body), tt.body) {
				t.Errorf("%s %s = %d Location %q body %.80q; want %d %q containing %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Location"), body, tt.code, tt.location, tt.body)
			}
		})
	}
}
