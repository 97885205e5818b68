package logging

import (
	"context"
	"strings"
	"testing"
)

func TestAcceptRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc-123", true},
		{"7f3a:9b/+=._", true},
		{strings.Repeat("a", 128), true},
		{"", false},
		{strings.Repeat("a", 129), false},
		{"has space", false},
		{"new\nline", false},
		{`quote"`, false},
		{"ünicode", false},
	} {
		got := AcceptRequestID(tc.in)
		if tc.keep && got != tc.in {
			t.Errorf("AcceptRequestID(%q) = %q, want it kept", tc.in, got)
		}
		if !tc.keep && (got == tc.in || len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "") {
			t.Errorf("AcceptRequestID(%q) = %q, want a new 16-hex-digit ID", tc.in, got)
		}
	}
	if a, b := NewRequestID(), NewRequestID(); a == b {
		t.Errorf("two new IDs are equal: %s", a)
	}
}

func TestRequestIDContext(t *testing.T) {
	ctx := context.Background()
	if got := RequestID(ctx); got != "" {
		t.Errorf("RequestID of a bare context = %q", got)
	}
	if got := WithRequestID(ctx, ""); got != ctx {
		t.Error("WithRequestID with no ID made a new context")
	}
	if got := RequestID(WithRequestID(ctx, "r1")); got != "r1" {
		t.Errorf("RequestID = %q, want r1", got)
	}
}
