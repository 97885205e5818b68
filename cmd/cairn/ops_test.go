package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// opsAgent is devAgent (kv_test.go) with a client.
func opsAgent(t *testing.T) (string, *api.Client) {
	t.Helper()
	addr := devAgent(t)
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return addr, c
}

func runCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestSnapshotCommands: save, inspect, restore into another agent.
func TestSnapshotCommands(t *testing.T) {
	src, srcClient := opsAgent(t)
	for _, k := range []string{"a/1", "a/2", "b"} {
		if _, err := srcClient.KV().Put(&api.KVPair{Key: k, Value: []byte(k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	code, out, errOut := runCmd("snapshot", "save", "-http-addr", src, file)
	if code != 0 || !strings.HasPrefix(out, "Saved and verified snapshot to index ") {
		t.Fatalf("snapshot save = %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = runCmd("snapshot", "inspect", file)
	if code != 0 {
		t.Fatalf("snapshot inspect = %d, %q", code, errOut)
	}
	fields := strings.Join(strings.Fields(out), " ")
	// 3 keys and the agent's gossip key binding (_cairn/gossip/key/).
	for _, want := range []string{"ID ", "Index ", "Term ", "KV entries 4", "Sessions 0", "keys under a/ 2", "keys under b 1"} {
		if !strings.Contains(fields, want) {
			t.Errorf("snapshot inspect output lacks %q:\n%s", want, out)
		}
	}

	dst, dstClient := opsAgent(t)
	code, out, errOut = runCmd("snapshot", "restore", "-http-addr", dst, file)
	if code != 0 || out != "Restored snapshot\n" {
		t.Fatalf("snapshot restore = %d, %q, %q", code, out, errOut)
	}
	keys, _, err := dstClient.KV().Keys("", "", nil)
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, "_cairn/") })
	if err != nil || strings.Join(keys, ",") != "a/1,a/2,b" {
		t.Errorf("keys after restore = %v, %v", keys, err)
	}

	// A damaged file is refused by inspect and by restore.
	bad := filepath.Join(t.TempDir(), "bad.snap")
	b, _ := os.ReadFile(file)
	os.WriteFile(bad, b[:len(b)/2], 0o600)
	if code, _, errOut := runCmd("snapshot", "inspect", bad); code != 1 || !strings.Contains(errOut, "damaged") {
		t.Errorf("snapshot inspect (damaged) = %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("snapshot", "restore", "-http-addr", dst, bad); code != 1 || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("snapshot restore (damaged) = %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("snapshot", "save", "-http-addr", dst); code != 1 || !strings.Contains(errOut, "one argument") {
		t.Errorf("snapshot save (no file) = %d, %q", code, errOut)
	}
}

// TestInfoAndDebugCommands: info prints the stats sections; debug writes
// an archive with every capture.
func TestInfoAndDebugCommands(t *testing.T) {
	addr, _ := opsAgent(t)
	code, out, errOut := runCmd("info", "-http-addr", addr)
	if code != 0 || !strings.Contains(out, "raft:\n") || !strings.Contains(out, "\tstate = Leader\n") {
		t.Errorf("info = %d, %q, %q; want a raft section with state = Leader", code, out, errOut)
	}

	archive := filepath.Join(t.TempDir(), "bundle.tar.gz")
	code, out, errOut = runCmd("debug", "-http-addr", addr, "-duration", "1s", "-output", archive)
	if code != 0 || !strings.Contains(out, "Saved debug archive: "+archive) || errOut != "" {
		t.Fatalf("debug = %d, %q, %q", code, out, errOut)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	contents := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		name := filepath.Base(h.Name)
		names = append(names, name)
		contents[name] = string(b)
	}
	sort.Strings(names)
	want := "agent.json,agent.log,goroutine.txt,heap.prof,host.json,members.json,metrics.json,metrics.prom,profile.prof,trace.out"
	if strings.Join(names, ",") != want {
		t.Errorf("debug archive holds %v, want %s", names, want)
	}
	if !strings.Contains(contents["goroutine.txt"], "goroutine ") || !strings.Contains(contents["metrics.prom"], "consul_runtime_alloc_bytes") {
		t.Error("goroutine.txt or metrics.prom does not hold what it names")
	}
	// A CPU profile is gzipped; a trace starts with its Go version.
	if !strings.HasPrefix(contents["profile.prof"], "\x1f\x8b") || !strings.HasPrefix(contents["trace.out"], "go 1.") {
		t.Errorf("profile.prof starts %q, trace.out %q; want a gzipped profile and a Go trace", head(contents["profile.prof"]), head(contents["trace.out"]))
	}

	code, _, errOut = runCmd("debug", "-http-addr", addr, "-duration", "0s", "-output", archive)
	if code != 1 || !strings.Contains(errOut, "-duration=0s is out of range") {
		t.Errorf("debug -duration 0s = %d, %q; want 1 and what to give", code, errOut)
	}
}

func head(s string) string { return s[:min(len(s), 12)] }

// TestReloadCommand: an agent without a configuration to re-read says so.
func TestReloadCommand(t *testing.T) {
	addr, _ := opsAgent(t)
	code, _, errOut := runCmd("reload", "-http-addr", addr)
	if code != 1 || !strings.Contains(errOut, "no configuration to re-read") {
		t.Errorf("reload = %d, %q", code, errOut)
	}
}
