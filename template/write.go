package template

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// installation is one new content for a destination.
type installation struct {
	dest   string
	perms  os.FileMode // 0: the existing file's, else DefaultPerms
	backup bool
	// check, when not nil, runs with the new contents at dest; an error
	// puts the previous file back.
	check func() error
	// warn reports a problem that does not stop the write.
	warn func(msg string, err error)
}

// rejection is the error of an install its check refused.
type rejection struct {
	check   error // what the check returned
	hadPrev bool  // the previous file was put back (else the new one was removed)
	undo    error // putting the previous file back (or removing the new one) failed
}

func (r *rejection) Error() string {
	msg := "check failed: " + r.check.Error()
	if r.undo != nil {
		msg += "; undoing the write failed too: " + r.undo.Error()
	}
	return msg
}

// install writes contents to the destination and reports whether it
// changed anything: nothing is written when the file already holds
// contents with the right permissions.
//
// The write is atomic: a temporary file in the destination's directory
// (written, synced, given the old file's permissions and owner, or the
// configured ones) is renamed over the destination, and the directory
// synced. A reader sees the old file or the new one, never a part.
//
// With a check, the previous file is kept as a hard link next to it
// before the rename; the check runs with the new file in place (so that
// "nginx -t" of a configuration that includes it sees it); when it fails,
// the link is renamed back over the destination, atomically again (or the
// new file removed, when there was no previous one), and install returns
// a *rejection. The new contents are in place only while the check runs. With backup, the previous file
// becomes <dest>.bak once the new one is kept.
func (in installation) install(contents []byte) (bool, error) {
	dest := in.dest
	old, err := os.ReadFile(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", dest, err)
	}
	var st os.FileInfo
	if exists {
		if st, err = os.Stat(dest); err != nil {
			return false, fmt.Errorf("stat %s: %w", dest, err)
		}
		if bytes.Equal(old, contents) && (in.perms == 0 || st.Mode().Perm() == in.perms) {
			return false, nil
		}
	}

	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create the directory of %s: %w", dest, err)
	}
	perms := in.perms
	if perms == 0 {
		perms = DefaultPerms
		if exists {
			perms = st.Mode().Perm()
		}
	}
	tmp, err := writeTemp(dir, filepath.Base(dest), contents, perms)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", dest, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	if exists {
		if err := sameOwner(tmp, st); err != nil && in.warn != nil {
			in.warn("could not give the new file the owner of the old one", err)
		}
	}

	// Keep the previous file reachable when it may have to come back or
	// be kept as the backup.
	var prev string
	if exists && (in.check != nil || in.backup) {
		if prev, err = keepPrevious(dest); err != nil {
			return false, fmt.Errorf("keep the previous %s: %w", dest, err)
		}
		defer os.Remove(prev) // a no-op once renamed
	}
	if err := os.Rename(tmp, dest); err != nil {
		return false, fmt.Errorf("replace %s: %w", dest, err)
	}
	syncDir(dir)

	if in.check != nil {
		if err := in.check(); err != nil {
			rej := &rejection{check: err, hadPrev: prev != ""}
			if prev != "" {
				rej.undo = os.Rename(prev, dest)
			} else if rerr := os.Remove(dest); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				rej.undo = rerr
			}
			syncDir(dir)
			return false, rej
		}
	}
	if in.backup && prev != "" {
		if err := os.Rename(prev, dest+".bak"); err != nil && in.warn != nil {
			in.warn("could not keep the backup "+dest+".bak", err)
		}
	}
	return true, nil
}

// writeTemp writes contents to a new hidden file in dir and syncs it.
func writeTemp(dir, base string, contents []byte, perms os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".cairn-new-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = f.Write(contents)
	if err == nil {
		err = f.Chmod(perms)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// keepPrevious makes a second name for dest in its directory: a hard link
// (the same file: contents, permissions, owner), or a copy where links do
// not work.
func keepPrevious(dest string) (string, error) {
	dir, base := filepath.Dir(dest), filepath.Base(dest)
	f, err := os.CreateTemp(dir, "."+base+".cairn-prev-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	if err := os.Link(dest, name); err == nil {
		return name, nil
	}
	src, err := os.Open(dest)
	if err != nil {
		return "", err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return "", err
	}
	dst, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return "", err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_ = sameOwner(name, st)
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// syncDir makes a rename in dir durable. Errors are ignored: not every
// file system can sync a directory, and the rename itself succeeded.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
