// Package ui owns the web view at /ui/: plain HTML, CSS and JavaScript
// embedded in the binary (no build step, no npm), which reads and writes
// through the agent's own /v1 API with the token the operator types in,
// and stays current through blocking queries. It imports nothing of
// cairn.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Handler serves the web view under /ui/ and redirects a browser's
// GET / to it; every other request goes to api (the /v1 handler, whose
// GET / is a page for clients that do not ask for HTML).
func Handler(api http.Handler) http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fileServer := http.StripPrefix("/ui/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html"):
			// A browser goes to the web view; curl and other clients get
			// the API's index page (which links /ui/ too).
			http.Redirect(w, r, "/ui/", http.StatusFound)
		case r.URL.Path == "/ui":
			http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		case len(r.URL.Path) >= 4 && r.URL.Path[:4] == "/ui/":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "the web view is read with GET", http.StatusMethodNotAllowed)
				return
			}
			// The page talks to this agent only; it must not be framed
			// by another site (clickjacking a KV edit).
			w.Header().Set("X-Frame-Options", "DENY")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
			w.Header().Set("Cache-Control", "no-cache")
			fileServer.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}
