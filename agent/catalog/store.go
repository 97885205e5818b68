package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/agent/checks"
)

// store keeps this agent's entries in the data dir, one file per service
// and per check (as Consul does), each written atomically (a temporary
// file, fsync, rename, fsync of the directory), so a crash leaves either
// the old file or the new one:
//
//	<data-dir>/services/<sha256 of the ID>.json   a service
//	<data-dir>/checks/<sha256 of the ID>.json     a check definition
//	<data-dir>/catalog/external.json              nodes registered through /v1/catalog/register
//	<data-dir>/catalog/version                    the reserved version high-water mark
type store struct{ dir string }

const fileFormat = 1

type serviceFile struct {
	Format  int
	Service *Service
}

type checkFile struct {
	Format int
	Check  checks.Definition
}

type externalFile struct {
	Format int
	Nodes  []*externalNode
}

type loaded struct {
	services []*Service
	checks   []checks.Definition
	external []*externalNode
	reserved uint64
}

func fileName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16]) + ".json"
}

func (s *store) servicePath(id string) string {
	return filepath.Join(s.dir, "services", fileName(id))
}

func (s *store) checkPath(id string) string {
	return filepath.Join(s.dir, "checks", fileName(id))
}

func (s *store) saveService(svc *Service) error {
	return s.writeJSON(s.servicePath(svc.ID), serviceFile{Format: fileFormat, Service: svc}, "service "+quote(svc.ID))
}

func (s *store) removeService(id string) error {
	return s.remove(s.servicePath(id), "service "+quote(id))
}

func (s *store) saveCheck(d checks.Definition) error {
	return s.writeJSON(s.checkPath(d.ID), checkFile{Format: fileFormat, Check: d}, "check "+quote(d.ID))
}

func (s *store) removeCheck(id string) error {
	return s.remove(s.checkPath(id), "check "+quote(id))
}

func (s *store) saveExternal(nodes map[string]*externalNode) error {
	f := externalFile{Format: fileFormat}
	for _, n := range nodes {
		f.Nodes = append(f.Nodes, n)
	}
	sort.Slice(f.Nodes, func(i, j int) bool { return lower(f.Nodes[i].Node.Node) < lower(f.Nodes[j].Node.Node) })
	return s.writeJSON(filepath.Join(s.dir, "catalog", "external.json"), f, "the catalog registrations")
}

func (s *store) saveReserved(v uint64) error {
	return s.writeFile(filepath.Join(s.dir, "catalog", "version"), []byte(strconv.FormatUint(v, 10)+"\n"), "the catalog version")
}

func (s *store) writeJSON(path string, v any, what string) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: encode: %w", what, err)
	}
	return s.writeFile(path, append(b, '\n'), what)
}

// writeFile replaces path atomically.
func (s *store) writeFile(path string, data []byte, what string) (err error) {
	dir := filepath.Dir(path)
	fail := func(err error) error {
		return fmt.Errorf("save %s in %s: %w (is the data dir writable and not full?)", what, dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	return syncDir(dir, fail)
}

func (s *store) remove(path, what string) error {
	err := os.Remove(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s from the data dir: %w", what, err)
	}
	return syncDir(filepath.Dir(path), func(err error) error {
		return fmt.Errorf("remove %s from the data dir: %w", what, err)
	})
}

func syncDir(dir string, fail func(error) error) error {
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fail(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fail(err)
	}
	return nil
}

// load reads everything back. A file that cannot be read stops the agent
// with its path: silently dropping a registration would be worse.
func (s *store) load() (loaded, error) {
	var out loaded
	err := readDir(filepath.Join(s.dir, "services"), func(path string, b []byte) error {
		var f serviceFile
		if err := json.Unmarshal(b, &f); err != nil || f.Service == nil || f.Service.ID == "" {
			return corrupt(path, err)
		}
		normalizeService(f.Service)
		out.services = append(out.services, f.Service)
		return nil
	})
	if err != nil {
		return out, err
	}
	err = readDir(filepath.Join(s.dir, "checks"), func(path string, b []byte) error {
		var f checkFile
		if err := json.Unmarshal(b, &f); err != nil || f.Check.ID == "" {
			return corrupt(path, err)
		}
		normalizeDef(&f.Check)
		out.checks = append(out.checks, f.Check)
		return nil
	})
	if err != nil {
		return out, err
	}
	path := filepath.Join(s.dir, "catalog", "external.json")
	if b, err := os.ReadFile(path); err == nil {
		var f externalFile
		if err := json.Unmarshal(b, &f); err != nil {
			return out, corrupt(path, err)
		}
		for _, n := range f.Nodes {
			if n == nil || n.Node == nil || n.Node.Node == "" {
				return out, corrupt(path, errors.New("a node has no name"))
			}
			normalizeNode(n.Node)
			if n.Services == nil {
				n.Services = map[string]*Service{}
			}
			if n.Checks == nil {
				n.Checks = map[string]*Check{}
			}
			for _, svc := range n.Services {
				svc.Node = n.Node.Node
				normalizeService(svc)
			}
			for _, chk := range n.Checks {
				chk.Node = n.Node.Node
				normalizeCheck(chk)
			}
			out.external = append(out.external, n)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("read %s: %w", path, err)
	}
	path = filepath.Join(s.dir, "catalog", "version")
	if b, err := os.ReadFile(path); err == nil {
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return out, corrupt(path, err)
		}
		out.reserved = v
	} else if !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

func corrupt(path string, err error) error {
	if err == nil {
		err = errors.New("required fields are missing")
	}
	return fmt.Errorf("read %s: it is not a cairn catalog file (%v); fix it, or remove it to drop that registration", path, err)
}

func readDir(dir string, fn func(path string, b []byte) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			// Left by a crash in the middle of a write: the rename never
			// happened, so the previous file (if any) is the one in force.
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := fn(path, b); err != nil {
			return err
		}
	}
	return nil
}
