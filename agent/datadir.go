package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// nodeIDFile keeps the generated node ID, as Consul's <data-dir>/node-id.
const nodeIDFile = "node-id"

// prepareDataDir makes sure dir is a directory this agent alone uses and
// returns the function that releases it.
func prepareDataDir(dir string) (release func(), err error) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("-data-dir=%s is a file, not a directory; point -data-dir at a directory (it is created if missing)", dir)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create -data-dir: %w; create it yourself or choose a writable path", err)
		}
	case err != nil:
		return nil, fmt.Errorf("-data-dir: %w", err)
	}
	return lockDataDir(dir)
}

// loadNodeID returns the node's ID: the one kept in dir, or configured
// (and then kept), or a new one (and then kept). A configured ID that
// differs from the kept one is an error: the Raft state in dir belongs to
// the kept ID.
func loadNodeID(dir, configured string) (string, error) {
	path := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		kept := strings.TrimSpace(string(b))
		if !isUUID(kept) {
			return "", fmt.Errorf("node ID file %s holds %q, which is not a UUID; restore it from a backup, or remove it to get a new ID (and with it a new identity in the cluster)", path, truncate(kept, 40))
		}
		if configured != "" && !strings.EqualFold(configured, kept) {
			return "", fmt.Errorf("-node-id=%s differs from %s kept in %s, and the data dir's Raft state belongs to the kept ID; drop -node-id or use a new -data-dir", configured, kept, path)
		}
		return strings.ToLower(kept), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read node ID: %w", err)
	}
	id := strings.ToLower(configured)
	if id == "" {
		id = newUUID()
	}
	if err := writeDurably(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write node ID: %w; is -data-dir=%s writable by this user?", err, dir)
	}
	return id, nil
}

// writeDurably writes data to path so that a crash or a disk error later
// leaves either no file or the whole one (a plain write left node-id
// empty when ext4 went read-only after an error, and the agent could not
// start again): a temporary file, synced, renamed, the directory synced.
func writeDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
