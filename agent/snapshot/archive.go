// Package snapshot owns the snapshot archive that `cairn snapshot save`,
// GET /v1/snapshot and `cairn snapshot inspect` produce and read: a
// gzipped tar with meta.json (the Raft index, term and size), state.bin
// (the store's state) and SHA256SUMS, the layout of Consul's snapshot
// archives. Every file is checked against its sum before anything is
// restored, so a damaged archive changes nothing. It knows nothing of
// HTTP or of the agent; kv reads and writes the state inside.
package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Meta is meta.json: what the archive's state is.
type Meta struct {
	ID      string
	Index   uint64
	Term    uint64
	Size    int64  // bytes of state.bin
	Version string `json:",omitempty"` // the cairn version that wrote it
	Created time.Time
}

// ErrCorrupt is a damaged or foreign archive (a missing file, a sum that
// does not match, not gzip/tar).
var ErrCorrupt = errors.New("snapshot archive is damaged or not a cairn snapshot")

// Write writes an archive of state (meta.Size bytes) to w.
func Write(w io.Writer, meta Meta, state io.Reader) error {
	metaJSON, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := meta.Created
	if now.IsZero() {
		now = time.Now()
	}
	sums := &bytes.Buffer{}
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), r)
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("write %s: the state had %d bytes, not the %d announced", name, n, size)
		}
		fmt.Fprintf(sums, "%x  %s\n", h.Sum(nil), name)
		return nil
	}
	if err := add("meta.json", int64(len(metaJSON)), bytes.NewReader(metaJSON)); err != nil {
		return err
	}
	if err := add("state.bin", meta.Size, state); err != nil {
		return err
	}
	sumBytes := sums.Bytes()
	if err := tw.WriteHeader(&tar.Header{Name: "SHA256SUMS", Mode: 0o600, Size: int64(len(sumBytes)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(sumBytes); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// Archive is a read and verified archive; State reads state.bin from a
// temporary file that Close removes.
type Archive struct {
	Meta  Meta
	state *os.File
}

// State returns a reader of state.bin from its start.
func (a *Archive) State() (io.Reader, error) {
	if _, err := a.state.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return bufio.NewReader(a.state), nil
}

// Close removes the temporary copy of the state.
func (a *Archive) Close() error {
	name := a.state.Name()
	a.state.Close()
	return os.Remove(name)
}

// Read reads an archive from r, keeps its state in a temporary file
// (snapshots can be larger than memory should hold), and verifies every
// file against SHA256SUMS. Errors wrap ErrCorrupt when the archive is at
// fault.
func Read(r io.Reader) (*Archive, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrCorrupt, err)
	}
	tmp, err := os.CreateTemp("", "cairn-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: temporary file for the state: %w", err)
	}
	a := &Archive{state: tmp}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	tr := tar.NewReader(gz)
	got := map[string]string{}
	var metaJSON, sums []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read tar: %v", ErrCorrupt, err)
		}
		h := sha256.New()
		switch hdr.Name {
		case "meta.json":
			metaJSON, err = io.ReadAll(io.TeeReader(io.LimitReader(tr, 1<<20), h))
		case "state.bin":
			_, err = io.Copy(io.MultiWriter(tmp, h), tr)
		case "SHA256SUMS":
			if sums, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return nil, fmt.Errorf("%w: read %s: %v", ErrCorrupt, hdr.Name, err)
			}
			continue
		default:
			return nil, fmt.Errorf("%w: unexpected file %q in the archive", ErrCorrupt, hdr.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", ErrCorrupt, hdr.Name, err)
		}
		got[hdr.Name] = hex.EncodeToString(h.Sum(nil))
	}
	if sums == nil {
		return nil, fmt.Errorf("%w: no SHA256SUMS", ErrCorrupt)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, found := strings.Cut(line, "  ")
		if !found {
			return nil, fmt.Errorf("%w: SHA256SUMS line %q is not \"<sum>  <file>\"", ErrCorrupt, line)
		}
		want[name] = sum
	}
	for _, name := range []string{"meta.json", "state.bin"} {
		if _, ok := got[name]; !ok {
			return nil, fmt.Errorf("%w: no %s", ErrCorrupt, name)
		}
		if got[name] != want[name] {
			return nil, fmt.Errorf("%w: %s has SHA-256 %s, SHA256SUMS says %s", ErrCorrupt, name, got[name], want[name])
		}
	}
	if err := json.Unmarshal(metaJSON, &a.Meta); err != nil {
		return nil, fmt.Errorf("%w: meta.json: %v", ErrCorrupt, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != a.Meta.Size {
		return nil, fmt.Errorf("%w: state.bin has %d bytes, meta.json says %d", ErrCorrupt, fi.Size(), a.Meta.Size)
	}
	ok = true
	return a, nil
}
