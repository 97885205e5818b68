package catalog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/agent/checks"
)

// store keeps this agent's entries in the data dir as an append-only log
// of changes, one line per change:
//
//	<data-dir>/catalog/state.log
//
// Each line is the CRC-32C of its JSON (8 hex digits), a space, and the
// JSON of one change: a service or check saved or removed, an external
// node (registered through /v1/catalog/register) saved or removed, or a
// reserved version high-water mark. A change costs one write(2), whatever
// the number of entries; concurrent changes share one fsync (group
// commit: wait syncs everything written so far, and whoever arrives while
// a sync runs waits for the next one). A change is acknowledged only once
// synced, so an acknowledged change survives kill -9; a crash in the
// middle of a write leaves a torn last line, which was never acknowledged
// and is cut off at the next start.
//
// When the log holds many more lines than live entries it is compacted:
// the whole state is written to a temporary file that starts with a reset
// line, synced, and renamed over the log.
//
// Data dirs of earlier versions kept one file per entry
// (services/<hash>.json, checks/<hash>.json, catalog/external.json,
// catalog/version). They are read at start-up, written into a compacted
// log, and removed only once the log is on disk: a crash in between
// leaves both, and the log's reset line makes it win.
type store struct {
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File // the log, open for appending; nil until the first write
	written uint64   // sequence number of the last line written
	synced  uint64   // ... and of the last line known to be on disk
	syncing bool     // a sync runs (without mu)
	failed  error    // a failed write or sync: the log is in doubt from then on
	lines   int      // lines in the log, for compaction
}

const fileFormat = 1

// Operations of a log line.
const (
	opReset           = "reset" // start of a compacted log: forget everything before
	opService         = "service"
	opServiceRemove   = "-service"
	opCheck           = "check"
	opCheckRemove     = "-check"
	opExternal        = "external"
	opExternalRemove  = "-external"
	opReserved        = "reserved"
	opTxn             = "txn"  // a /v1/txn's catalog half was applied (txnledger.go)
	opTxnForget       = "-txn" // ... and its intent is gone from the KV store
	logName           = "state.log"
	compactMinLines   = 1024
	compactLiveFactor = 2
)

// logLine is one change. Only the fields of its Op are set.
type logLine struct {
	Op       string
	Format   int                `json:",omitempty"`
	ID       string             `json:",omitempty"`
	Service  *Service           `json:",omitempty"`
	Check    *checks.Definition `json:",omitempty"`
	External *externalNode      `json:",omitempty"`
	Reserved uint64             `json:",omitempty"`
}

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
	txns     map[string]bool // applied transaction intents (txnledger.go)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (s *store) logPath() string { return filepath.Join(s.dir, "catalog", logName) }

func (s *store) saveService(svc *Service) (uint64, error) {
	return s.append(logLine{Op: opService, Service: svc}, "service "+quote(svc.ID))
}

func (s *store) removeService(id string) (uint64, error) {
	return s.append(logLine{Op: opServiceRemove, ID: id}, "the removal of service "+quote(id))
}

func (s *store) saveCheck(d checks.Definition) (uint64, error) {
	return s.append(logLine{Op: opCheck, Check: &d}, "check "+quote(d.ID))
}

func (s *store) removeCheck(id string) (uint64, error) {
	return s.append(logLine{Op: opCheckRemove, ID: id}, "the removal of check "+quote(id))
}

// saveExternal records one external node as it is now; nil n records
// that the node named name is gone.
func (s *store) saveExternal(name string, n *externalNode) (uint64, error) {
	if n == nil {
		return s.append(logLine{Op: opExternalRemove, ID: name}, "the removal of node "+quote(name))
	}
	return s.append(logLine{Op: opExternal, External: n}, "the registrations of node "+quote(name))
}

// saveReserved records the reserved version high-water mark and syncs at
// once: no version above the previous mark may be published before it is
// on disk.
func (s *store) saveReserved(v uint64) error {
	seq, err := s.append(logLine{Op: opReserved, Reserved: v}, "the catalog version")
	if err != nil {
		return err
	}
	return s.wait(seq)
}

func encodeLine(l logLine) ([]byte, error) {
	js, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(js)+10)
	out = fmt.Appendf(out, "%08x ", crc32.Checksum(js, crcTable))
	out = append(out, js...)
	return append(out, '\n'), nil
}

func (s *store) fail(what string, err error) error {
	return fmt.Errorf("save %s in %s: %w (is the data dir writable and not full?)", what, filepath.Join(s.dir, "catalog"), err)
}

// append writes one line (no sync) and returns its sequence number, for
// wait.
func (s *store) append(l logLine, what string) (uint64, error) {
	b, err := encodeLine(l)
	if err != nil {
		return 0, fmt.Errorf("save %s: encode: %w", what, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return 0, s.fail(what, s.failed)
	}
	if s.f == nil {
		if err := s.openLocked(); err != nil {
			return 0, s.fail(what, err)
		}
	}
	if _, err := s.f.Write(b); err != nil {
		// A partial line may be in the file: nothing after it could
		// be read back, so stop writing.
		s.failed = err
		return 0, s.fail(what, err)
	}
	s.written++
	s.lines++
	return s.written, nil
}

func (s *store) openLocked() error {
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	dir := filepath.Join(s.dir, "catalog")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// A new file must be found after a crash: sync its directory entry.
	if err := syncDir(dir); err != nil {
		f.Close()
		return err
	}
	s.f = f
	return nil
}

// wait returns once every line up to seq is on disk. Concurrent callers
// share syncs.
func (s *store) wait(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	for s.synced < seq {
		if s.failed != nil {
			return s.fail("changes", s.failed)
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		target, f := s.written, s.f
		s.mu.Unlock()
		err := f.Sync()
		s.mu.Lock()
		s.syncing = false
		if err != nil {
			s.failed = err
		} else {
			s.synced = max(s.synced, target)
		}
		s.cond.Broadcast()
	}
	return nil
}

// needsCompaction: the log holds many more lines than the live entries.
func (s *store) needsCompaction(live int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines > max(compactMinLines, compactLiveFactor*live)
}

// compact replaces the log with one holding just lines (the whole
// state), behind a reset line, and removes the files of earlier versions.
// The caller holds whatever keeps the state from changing meanwhile.
func (s *store) compact(lines []logLine) error {
	var buf bytes.Buffer
	for _, l := range append([]logLine{{Op: opReset, Format: fileFormat}}, lines...) {
		b, err := encodeLine(l)
		if err != nil {
			return fmt.Errorf("compact the catalog log: encode: %w", err)
		}
		buf.Write(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	for s.syncing {
		s.cond.Wait()
	}
	if s.failed != nil {
		return s.fail("the compacted log", s.failed)
	}
	dir := filepath.Join(s.dir, "catalog")
	if err := writeFile(filepath.Join(dir, logName), buf.Bytes()); err != nil {
		return s.fail("the compacted log", err)
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	// Everything written before is in the new file, on disk.
	s.synced = s.written
	s.lines = len(lines) + 1
	s.cond.Broadcast()
	if err := s.openLocked(); err != nil {
		return s.fail("the catalog log", err)
	}
	return removeLegacy(s.dir)
}

// close syncs what was written and closes the log file; a later write
// opens it again. A write that was appended but not yet waited for is
// on disk once close returns nil.
func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.syncing {
		s.cond.Wait()
	}
	if s.f == nil {
		return nil
	}
	var err error
	if s.synced < s.written && s.failed == nil {
		if err = s.f.Sync(); err != nil {
			s.failed = err
		} else {
			s.synced = s.written
		}
	}
	err = errors.Join(err, s.f.Close())
	s.f = nil
	s.cond.Broadcast()
	return err
}

// writeFile replaces path atomically: a temporary file, fsync, rename,
// fsync of the directory.
func writeFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer d.Close()
	return d.Sync()
}

// load reads everything back: the files of earlier versions, then the
// log. A line that cannot be read stops the agent with its path and line
// number (silently dropping a registration would be worse), except a torn
// last line, which is cut off. migrated says files of an earlier version
// were read: the caller compacts, which writes them into the log.
func (s *store) load() (out loaded, migrated bool, err error) {
	services := map[string]*Service{}
	chks := map[string]checks.Definition{}
	external := map[string]*externalNode{}
	var reserved uint64

	migrated, err = loadLegacy(s.dir, services, chks, external, &reserved)
	if err != nil {
		return out, false, err
	}
	out.txns = map[string]bool{}
	if err := s.replay(services, chks, external, &reserved, out.txns); err != nil {
		return out, false, err
	}
	for _, svc := range services {
		out.services = append(out.services, svc)
	}
	sort.Slice(out.services, func(i, j int) bool { return out.services[i].ID < out.services[j].ID })
	for _, d := range chks {
		out.checks = append(out.checks, d)
	}
	sort.Slice(out.checks, func(i, j int) bool { return out.checks[i].ID < out.checks[j].ID })
	for _, n := range external {
		out.external = append(out.external, n)
	}
	sort.Slice(out.external, func(i, j int) bool {
		return lower(out.external[i].Node.Node) < lower(out.external[j].Node.Node)
	})
	out.reserved = reserved
	return out, migrated, nil
}

// replay applies the log's lines to the maps, and cuts a torn last line.
func (s *store) replay(services map[string]*Service, chks map[string]checks.Definition, external map[string]*externalNode, reserved *uint64, txns map[string]bool) error {
	path := s.logPath()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var (
		offset int64 // of the line being read
		lineNo int
		bad    error // the first unreadable line, at badOffset
		badAt  int64
		badNo  int
	)
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) == 0 && rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read %s: %w", path, rerr)
		}
		lineNo++
		if bad != nil {
			// A bad line with good ones after it is damage, not a
			// torn write.
			return corrupt(fmt.Sprintf("%s line %d", path, badNo), bad)
		}
		l, err := decodeLine(line, rerr == io.EOF)
		if err != nil {
			bad, badAt, badNo = err, offset, lineNo
			offset += int64(len(line))
			continue
		}
		offset += int64(len(line))
		s.lines++
		switch l.Op {
		case opReset:
			clear(services)
			clear(chks)
			clear(external)
			clear(txns)
			*reserved = 0
			s.lines = 1
		case opService:
			if l.Service == nil || l.Service.ID == "" {
				return corrupt(fmt.Sprintf("%s line %d", path, lineNo), errors.New("a service without an ID"))
			}
			normalizeService(l.Service)
			services[l.Service.ID] = l.Service
		case opServiceRemove:
			delete(services, l.ID)
		case opCheck:
			if l.Check == nil || l.Check.ID == "" {
				return corrupt(fmt.Sprintf("%s line %d", path, lineNo), errors.New("a check without an ID"))
			}
			normalizeDef(l.Check)
			chks[l.Check.ID] = *l.Check
		case opCheckRemove:
			delete(chks, l.ID)
		case opExternal:
			n := l.External
			if err := fixExternal(n); err != nil {
				return corrupt(fmt.Sprintf("%s line %d", path, lineNo), err)
			}
			external[lower(n.Node.Node)] = n
		case opExternalRemove:
			delete(external, lower(l.ID))
		case opReserved:
			*reserved = max(*reserved, l.Reserved)
		case opTxn:
			txns[l.ID] = true
		case opTxnForget:
			delete(txns, l.ID)
		default:
			return fmt.Errorf("read %s line %d: unknown change %q (written by a newer cairn?); run that version, or remove the file to drop every registration", path, lineNo, l.Op)
		}
	}
	if bad != nil {
		// The last line is torn: it was being written when the agent
		// stopped, so it was never acknowledged. Cut it off, so that
		// new lines follow a whole one.
		if err := f.Truncate(badAt); err != nil {
			return fmt.Errorf("cut the torn last line of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("cut the torn last line of %s: %w", path, err)
		}
	}
	return nil
}

func decodeLine(line []byte, last bool) (logLine, error) {
	var l logLine
	if last && (len(line) == 0 || line[len(line)-1] != '\n') {
		return l, errors.New("the line is incomplete")
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	sum, js, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(sum) != 8 {
		return l, errors.New("no checksum")
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(js, crcTable) {
		return l, errors.New("the checksum does not match")
	}
	if err := json.Unmarshal(js, &l); err != nil {
		return l, err
	}
	return l, nil
}

// fixExternal checks and completes an external node read back.
func fixExternal(n *externalNode) error {
	if n == nil || n.Node == nil || n.Node.Node == "" {
		return errors.New("a node has no name")
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
	return nil
}

// ---- the layout of earlier versions: one file per entry ----

// loadLegacy reads the files of earlier versions into the maps; found
// says there were any.
func loadLegacy(dir string, services map[string]*Service, chks map[string]checks.Definition, external map[string]*externalNode, reserved *uint64) (found bool, err error) {
	err = readDir(filepath.Join(dir, "services"), func(path string, b []byte) error {
		found = true
		var f serviceFile
		if err := json.Unmarshal(b, &f); err != nil || f.Service == nil || f.Service.ID == "" {
			return corrupt(path, err)
		}
		normalizeService(f.Service)
		services[f.Service.ID] = f.Service
		return nil
	})
	if err != nil {
		return false, err
	}
	err = readDir(filepath.Join(dir, "checks"), func(path string, b []byte) error {
		found = true
		var f checkFile
		if err := json.Unmarshal(b, &f); err != nil || f.Check.ID == "" {
			return corrupt(path, err)
		}
		normalizeDef(&f.Check)
		chks[f.Check.ID] = f.Check
		return nil
	})
	if err != nil {
		return false, err
	}
	path := filepath.Join(dir, "catalog", "external.json")
	if b, err := os.ReadFile(path); err == nil {
		found = true
		var f externalFile
		if err := json.Unmarshal(b, &f); err != nil {
			return false, corrupt(path, err)
		}
		for _, n := range f.Nodes {
			if err := fixExternal(n); err != nil {
				return false, corrupt(path, err)
			}
			external[lower(n.Node.Node)] = n
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	path = filepath.Join(dir, "catalog", "version")
	if b, err := os.ReadFile(path); err == nil {
		found = true
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return false, corrupt(path, err)
		}
		*reserved = max(*reserved, v)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return found, nil
}

// removeLegacy removes the files of earlier versions, once the log holds
// their content.
func removeLegacy(dir string) error {
	for _, sub := range []string{"services", "checks"} {
		d := filepath.Join(dir, sub)
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove the old catalog files in %s: %w", d, err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the old catalog file: %w", err)
			}
		}
		os.Remove(d) // only when empty: anything else there is not ours
	}
	for _, name := range []string{"external.json", "version"} {
		if err := os.Remove(filepath.Join(dir, "catalog", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the old catalog file: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("remove the old catalog files in %s: %w", dir, err)
	}
	return nil
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
