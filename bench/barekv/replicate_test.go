package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestReplicateReachesMajority: every record a leader's wait returns for
// is synced on at least one follower (with the leader, a majority of
// three), and in the end on both, in order.
func TestReplicateReachesMajority(t *testing.T) {
	var (
		addrs []string
		logs  []string
	)
	for range 2 {
		path := filepath.Join(t.TempDir(), "barekv.log")
		log, err := openGroupLog(path, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.f.Close() })
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go follow(ln, log)
		addrs = append(addrs, ln.Addr().String())
		logs = append(logs, path)
	}
	r, err := replicate(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		recs [][]byte
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				rec := fmt.Appendf(nil, "<%d.%d>", w, i)
				mu.Lock()
				seq := r.add(rec) // the order records are added is the order they are sent
				recs = append(recs, rec)
				mu.Unlock()
				if err := r.wait(seq); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Each record is acknowledged by one follower at least; wait for the
	// last to be on both.
	r.mu.Lock()
	r.need = 2
	last := r.seq
	r.mu.Unlock()
	if err := r.wait(last); err != nil {
		t.Fatal(err)
	}
	want := bytes.Join(recs, nil)
	for _, path := range logs {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, want) {
			t.Errorf("%s starts %.80q..., want the %d records in the order added", path, got, len(recs))
		}
	}
}
