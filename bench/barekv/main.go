// Command barekv is the baseline for KV benchmarks: a bare net/http
// server that answers every GET with the same bytes and headers cairn
// sends for a 128-byte key, and does nothing else. Load both with the same
// client, side by side, and report cairn's rate as a ratio of this one's.
//
//	barekv -addr 127.0.0.1:18501 -body "$(curl -s 127.0.0.1:8500/v1/kv/bench/key)"
//
// With -durable DIR it is the ceiling of durable writes instead: every
// PUT appends its body to a log in DIR and is answered true only once an
// fdatasync covers it, as an acknowledged cairn write is on disk. Writes
// that arrive while one sync runs share the next (group commit), so it
// costs what cairn's Raft log must at least: one sync per batch, and
// net/http.
//
// With -replicate it is the leader of three such servers, the ceiling of
// a three-server write; the other two run with -follow (see replicate.go):
//
//	barekv -addr 127.0.0.1:18502 -durable /tmp/f1 -follow 127.0.0.1:18602 &
//	barekv -addr 127.0.0.1:18503 -durable /tmp/f2 -follow 127.0.0.1:18603 &
//	barekv -addr 127.0.0.1:18501 -durable /tmp/l -replicate 127.0.0.1:18602,127.0.0.1:18603
//
// With -send-after-sync as well, the leader sends a record only once its
// own sync covers it, as hashicorp/raft's does: a write then waits for
// two syncs in a row.
//
// GET /debug/pprof/trace?seconds=N answers an execution trace of N
// seconds, as cairn's does, for bench/writepath.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18501", "listen address (loopback only)")
	body := flag.String("body", `[{"LockIndex":0,"Key":"bench/key","Flags":0,"Value":"dmFsdWU=","CreateIndex":5,"ModifyIndex":5}]`, "the JSON body to answer")
	durable := flag.String("durable", "", "answer PUTs true once their body is synced to a log in this directory")
	followAddr := flag.String("follow", "", "with -durable: also take a leader's records on this loopback host:port and sync them to the log")
	replicateTo := flag.String("replicate", "", "with -durable: also send every PUT to these comma-separated -follow addresses, and answer once a majority has synced it")
	afterSync := flag.Bool("send-after-sync", false, "with -replicate: send a PUT to the followers only once the leader's own sync covers it, as hashicorp/raft's leader does, instead of while it writes")
	flag.Parse()
	for _, a := range append([]string{*addr, *followAddr}, strings.Split(*replicateTo, ",")...) {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintf(os.Stderr, "barekv: %q must be a loopback host:port\n", a)
			os.Exit(2)
		}
	}
	if *durable == "" && (*followAddr != "" || *replicateTo != "") {
		fmt.Fprintln(os.Stderr, "barekv: -follow and -replicate need -durable DIR for the log")
		os.Exit(2)
	}
	b := []byte(*body)
	var (
		log *groupLog
		rep *replicator
		err error
	)
	if *durable != "" {
		if log, err = openGroupLog(filepath.Join(*durable, "barekv.log"), logSize); err != nil {
			fmt.Fprintln(os.Stderr, "barekv:", err)
			os.Exit(1)
		}
	}
	if *followAddr != "" {
		ln, err := net.Listen("tcp", *followAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "barekv:", err)
			os.Exit(1)
		}
		go func() {
			fmt.Fprintln(os.Stderr, "barekv:", follow(ln, log))
			os.Exit(1)
		}()
	}
	if *replicateTo != "" {
		if rep, err = replicate(strings.Split(*replicateTo, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "barekv:", err)
			os.Exit(1)
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/trace" {
			serveTrace(w, r)
			return
		}
		if log != nil && r.Method == http.MethodPut {
			data, err := io.ReadAll(r.Body)
			switch {
			case err != nil:
			case rep == nil:
				err = log.append(data)
			case *afterSync:
				if err = log.append(data); err == nil {
					err = rep.wait(rep.add(data))
				}
			default:
				seq := rep.add(data) // on its way to the followers while the leader writes
				if err = log.append(data); err == nil {
					err = rep.wait(seq)
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("true"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Consul-Index", "5")
		w.Header().Set("X-Consul-Knownleader", "true")
		w.Header().Set("X-Consul-Lastcontact", "0")
		w.Header().Set("X-Consul-Effective-Consistency", "leader")
		w.Write(b)
	})
	if err := http.ListenAndServe(*addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "barekv:", err)
		os.Exit(1)
	}
}

// groupLog appends records to a file and syncs them in groups: a writer
// that finds a sync running waits for it, and the next sync covers every
// record written meanwhile.
type groupLog struct {
	f    *os.File
	size int64 // preallocated
	off  int64 // where the next record goes

	mu      sync.Mutex
	cond    *sync.Cond
	written uint64 // appends written to the file
	synced  uint64 // appends an fdatasync has covered
	syncing bool
	err     error
}

// logSize is the log's preallocated size, as Raft's write-ahead log
// preallocates its segments: a sync then has no file size to update. A
// full log starts again at its beginning.
const logSize = 256 << 20

func openGroupLog(path string, size int64) (*groupLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("preallocate %s: %w", path, err)
	}
	l := &groupLog{f: f, size: size}
	l.cond = sync.NewCond(&l.mu)
	return l, nil
}

// append writes records and returns once a sync covers them.
func (l *groupLog) append(records ...[]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, data := range records {
		if l.off+int64(len(data)) > l.size {
			l.off = 0
		}
		if _, err := l.f.WriteAt(data, l.off); err != nil {
			return err
		}
		l.off += int64(len(data))
	}
	l.written++
	mine := l.written
	for l.synced < mine && l.err == nil {
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncing = true
		upTo := l.written
		l.mu.Unlock()
		err := syscall.Fdatasync(int(l.f.Fd()))
		l.mu.Lock()
		l.syncing = false
		l.err = err
		if err == nil {
			l.synced = upTo
		}
		l.cond.Broadcast()
	}
	return l.err
}

// serveTrace records an execution trace for ?seconds= (1 by default).
func serveTrace(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
	if err != nil || secs <= 0 {
		secs = 1
	}
	if err := trace.Start(w); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))):
	case <-r.Context().Done():
	}
	trace.Stop()
}
