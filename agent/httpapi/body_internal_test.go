package httpapi

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestReadAll: a body of declared length is read into a buffer of that
// size; one of unknown length is read to its end; one cut short of its
// declared length is an error, with what did arrive.
func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		n       int64
		want    string
		wantCap int
		err     error
	}{
		{"declared", "hello", 5, "hello", 5, nil},
		{"empty", "", 0, "", 0, nil},
		{"unknown length", strings.Repeat("v", 700), -1, strings.Repeat("v", 700), -1, nil},
		{"cut short", "hel", 5, "hel", 5, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(strings.NewReader(tc.body), tc.n)
			if string(got) != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("readAll = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if tc.wantCap >= 0 && cap(got) != tc.wantCap {
				t.Errorf("buffer of %d bytes for a body of %d; want %d", cap(got), tc.n, tc.wantCap)
			}
			if got == nil {
				t.Error("readAll = nil; want an empty body, not none")
			}
		})
	}
}
