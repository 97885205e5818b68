package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/kv"
)

// TestStatusOf pins the mapping of errors to status codes, the one place
// it is decided.
func TestStatusOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string // prefix of the body
	}{
		{"no leader", fmt.Errorf("%w: none within the hold time (7s)", kv.ErrNoLeader), 500, "No cluster leader: none within the hold time (7s); nothing was written"},
		{"outcome unknown", fmt.Errorf("%w: leadership was lost after the entry was appended", kv.ErrOutcomeUnknown), 503, "the write may have been applied; read before retrying: leadership was lost"},
		{"outcome unknown over no leader", fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, kv.ErrNoLeader), 503, "the write may have been applied; read before retrying"},
		{"disk full", &kv.DiskError{Kind: kv.DiskFull, Path: "/data/raft"}, 507, "disk full in the data dir /data/raft"},
		{"read-only disk", &kv.DiskError{Kind: kv.DiskReadOnly, Path: "/data/raft"}, 503, "read-only file system in the data dir /data/raft"},
		{"too many blocking queries", fmt.Errorf("%w: 16384", kv.ErrTooManyQueries), 429, "too many blocking queries"},
		{"not leader", fmt.Errorf("%w: leadership lost", kv.ErrNotLeader), 500, "No cluster leader: this server is not the Raft leader"},
		{"invalid request", fmt.Errorf("%w: key is empty", kv.ErrInvalidRequest), 400, "invalid request: key is empty"},
		{"session not found", fmt.Errorf("%w: \"x\"", kv.ErrSessionNotFound), 404, "session not found"},
		{"session not found with reason", withReason(kv.ErrSessionNotFound, "Session id 'x' not found"), 404, "Session id 'x' not found"},
		{"txn failed", kv.ErrTxnFailed, 409, "transaction failed"},
		{"shutdown", kv.ErrShutdown, 500, "kv server is shut down"},
		{"other datacenter", fmt.Errorf("%w: ?dc=x", errNoDCPath), 500, "No path to datacenter: ?dc=x"},
		{"bad request", badRequest("Missing key name"), 400, "Missing key name"},
		{"too large", tooLarge("too big"), 413, "too big"},
		{"method", &methodNotAllowedError{method: "POST"}, 405, "method POST not allowed"},
		{"anything else", errors.New("disk on fire"), 500, "disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := statusOf(tt.err)
			if code != tt.wantCode || !strings.HasPrefix(msg, tt.wantMsg) {
				t.Errorf("statusOf(%v) = %d %q, want %d %q...", tt.err, code, msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if code, _ := statusOf(badRequest("x")); code != http.StatusBadRequest {
		t.Errorf("statusOf(badRequest) = %d, want 400", code)
	}
}
