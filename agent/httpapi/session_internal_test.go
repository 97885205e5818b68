package httpapi

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/go-cmp/cmp"
)

// TestParseLockDelay: Consul's rule, numbers and strings below 1000ns
// are seconds.
func TestParseLockDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantSet bool
		wantErr string
	}{
		{in: ``},
		{in: `null`},
		{in: `"15s"`, want: 15 * time.Second, wantSet: true},
		{in: `"1ms"`, want: time.Millisecond, wantSet: true},
		{in: `"20ns"`, want: 20 * time.Second, wantSet: true},
		{in: `20`, want: 20 * time.Second, wantSet: true},
		{in: `0`, want: 0, wantSet: true},
		{in: `999`, want: 999 * time.Second, wantSet: true},
		{in: `1000`, want: 1000, wantSet: true},
		{in: `15000000000`, want: 15 * time.Second, wantSet: true},
		{in: `"20"`, wantErr: `LockDelay "20" is not a duration; use e.g. "15s" or a number of seconds`},
		{in: `-5`, wantErr: `LockDelay -5 is out of range; use a number of seconds from 0 to 60, or a duration such as "15s"`},
		{in: `1e300`, wantErr: `LockDelay 1e300 is out of range; use a number of seconds from 0 to 60, or a duration such as "15s"`},
		{in: `"-5s"`, wantErr: `LockDelay -5s is negative; use a duration from 0s to 60s`},
		{in: `true`, wantErr: `LockDelay true is neither a duration string nor a number; use e.g. "15s" or 15`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, set, err := parseLockDelay([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("parseLockDelay(%s) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || set != tt.wantSet {
				t.Errorf("parseLockDelay(%s) = %v, %v, %v; want %v, %v, nil", tt.in, got, set, err, tt.want, tt.wantSet)
			}
		})
	}
}

// TestDecodeSession pins the defaults and Consul's handling of the legacy
// Checks field next to NodeChecks (fixupEmptySessionChecks).
func TestDecodeSession(t *testing.T) {
	t.Parallel()
	h := &handler{self: Self{NodeName: "me"}}
	def := kv.Session{Node: "me", LockDelay: 15 * time.Second, Behavior: "release", NodeChecks: []string{"serfHealth"}}
	with := func(f func(*kv.Session)) kv.Session {
		s := def
		f(&s)
		return s
	}
	tests := []struct {
		name, body string
		want       kv.Session
	}{
		{"no body", ``, def},
		{"empty object", `{}`, def},
		{"fields", `{"Name":"n","Node":"other","Behavior":"delete","TTL":"30s","LockDelay":"2s"}`, with(func(s *kv.Session) {
			s.Name, s.Node, s.Behavior, s.TTL, s.LockDelay = "n", "other", "delete", "30s", 2*time.Second
		})},
		{"lower-case keys", `{"name":"n","lockdelay":3}`, with(func(s *kv.Session) { s.Name, s.LockDelay = "n", 3*time.Second })},
		{"Checks empty means none", `{"Checks":[]}`, with(func(s *kv.Session) { s.NodeChecks = []string{} })},
		{"Checks empty wins over NodeChecks", `{"Checks":[],"NodeChecks":["serfHealth"]}`, with(func(s *kv.Session) { s.NodeChecks = []string{} })},
		{"NodeChecks empty means none", `{"NodeChecks":[]}`, with(func(s *kv.Session) { s.NodeChecks = []string{} })},
		{"legacy Checks join NodeChecks", `{"Checks":["serfHealth","disk"]}`, with(func(s *kv.Session) { s.NodeChecks = []string{"serfHealth", "disk"} })},
		{"legacy Checks dropped when NodeChecks empty", `{"Checks":["disk"],"NodeChecks":[]}`, with(func(s *kv.Session) { s.NodeChecks = []string{} })},
		{"NodeChecks", `{"NodeChecks":["disk"]}`, with(func(s *kv.Session) { s.NodeChecks = []string{"disk"} })},
		{"ServiceChecks", `{"ServiceChecks":[{"ID":"web"}]}`, with(func(s *kv.Session) { s.ServiceChecks = []kv.ServiceCheck{{ID: "web"}} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.decodeSession([]byte(tt.body))
			if err != nil {
				t.Fatalf("decodeSession(%s): %v", tt.body, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeSession(%s) (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}
