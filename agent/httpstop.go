package agent

import (
	"context"
	"net/http"
	"strings"
)

// finishWritesOnStop keeps a store write running when the HTTP server
// stops. The stop cancels every request's context (stopping) so that
// parked blocking queries end at once; a write already sent on to the
// leader would then be answered "outcome unknown" although the cluster is
// about to decide it, so a write's context ends only when its client goes
// away. Shutdown waits for it (Config.ShutdownTimeout), and the store
// stops after the HTTP API, so it gets its real answer.
func finishWritesOnStop(next http.Handler, stopping context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !storeWrite(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		stop := context.AfterFunc(r.Context(), func() {
			if stopping.Err() == nil {
				cancel() // the client went away, not the server
			}
		})
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// storeWrite reports whether r writes to the replicated store: KV,
// transactions and sessions (whose answers a client acts on: a CAS, a
// lock, a session to lock with).
func storeWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodPut, http.MethodPost, http.MethodDelete:
	default:
		return false
	}
	p := r.URL.Path
	return strings.HasPrefix(p, "/v1/kv/") || p == "/v1/txn" || strings.HasPrefix(p, "/v1/session/")
}
