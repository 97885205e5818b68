package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func archive(t *testing.T, state string) []byte {
	t.Helper()
	var b bytes.Buffer
	meta := Meta{ID: "2-6-1", Index: 6, Term: 2, Size: int64(len(state)), Version: "test", Created: time.Unix(0, 0).UTC()}
	if err := Write(&b, meta, strings.NewReader(state)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	a, err := Read(bytes.NewReader(archive(t, `{"Entries":[]}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(st)
	if string(got) != `{"Entries":[]}` || a.Meta.Index != 6 || a.Meta.Term != 2 || a.Meta.ID != "2-6-1" {
		t.Errorf("Read = %+v, state %q", a.Meta, got)
	}
}

// rewrite rebuilds an archive with one file's content changed (and the
// sums left as they were).
func rewrite(t *testing.T, in []byte, name, content string) []byte {
	t.Helper()
	gz, _ := gzip.NewReader(bytes.NewReader(in))
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		b, _ := io.ReadAll(tr)
		if h.Name == name {
			b = []byte(content)
		}
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	gw.Close()
	return out.Bytes()
}

// cutInside rebuilds an archive whose tar stream ends a few bytes into
// the named file's content, in a whole gzip stream.
func cutInside(t *testing.T, in []byte, name string) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	// A tar header holds the file's name in its first 100 bytes, and its
	// content starts at the next 512-byte block.
	at := bytes.Index(raw, append([]byte(name), 0))
	if at < 0 || at%512 != 0 {
		t.Fatalf("no tar header for %s", name)
	}
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	gw.Write(raw[:at+512+10])
	gw.Close()
	return out.Bytes()
}

func TestReadRefusesDamage(t *testing.T) {
	good := archive(t, `{"Entries":[]}`)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not gzip", []byte("hello"), "not gzip"},
		{"truncated", good[:len(good)/2], "damaged"},
		{"state changed", rewrite(t, good, "state.bin", `{"Entries":[1]}`), "state.bin has SHA-256"},
		{"sums missing", rewrite(t, good, "SHA256SUMS", ""), "SHA256SUMS line"},
		{"sums cut short", cutInside(t, good, "SHA256SUMS"), "read SHA256SUMS: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.in))
			if err == nil {
				a.Close()
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read(%s) = %v, want ErrCorrupt with %q", tt.name, err, tt.want)
			}
		})
	}
}
