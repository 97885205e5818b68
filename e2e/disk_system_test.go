//go:build system && linux

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/hashicorp/consul/api"
)

// TestSystemDiskFaults runs a one-server agent whose data dir is on a
// small tmpfs the test mounts, and fills it up: writes fail naming the
// condition (never "no leader"), reads keep answering, /v1/agent/self
// shows the condition, and writes resume by themselves once space is
// freed. (A read-only remount cannot be made under an agent that holds
// its log open for writing; kv's unit test injects EROFS and EIO at the
// log store instead.)
func TestSystemDiskFaults(t *testing.T) {
	systemtest.NeedRoot(t)
	systemtest.NeedCommand(t, "mount")
	mnt := t.TempDir()
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt); err != nil {
		systemtest.Need(t, "mount a tmpfs", fmt.Errorf("%v: %s", err, out))
	}
	t.Cleanup(func() { runCmd("umount", "-l", mnt) })

	p := freePorts(t)
	dataDir := filepath.Join(mnt, "data")
	agent := start(t, "disk", serverArgs(dataDir, p)...)
	c := agent.waitLeader(p.httpAddr())
	if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("before")}, nil); err != nil {
		t.Fatal(err)
	}

	put := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+p.httpAddr()+"/v1/kv/k", strings.NewReader("during"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	condition := func() string {
		t.Helper()
		self, err := c.Agent().Self()
		if err != nil {
			t.Fatal(err)
		}
		stats, _ := self["Stats"]["disk"].(map[string]any)
		return fmt.Sprint(stats["condition"])
	}
	checkFault := func(kind string, code int) {
		t.Helper()
		gotCode, body := put()
		if gotCode != code || !strings.Contains(body, kind) || strings.Contains(body, "leader") {
			t.Fatalf("PUT during %s = %d %q; want %d naming %q", kind, gotCode, body, code, kind)
		}
		for _, q := range []*api.QueryOptions{nil, {RequireConsistent: true}, {AllowStale: true}} {
			e, _, err := c.KV().Get("k", q)
			if err != nil || e == nil || string(e.Value) != "before" {
				t.Fatalf("read %+v during %s = %v, %v; want \"before\" from memory", q, kind, e, err)
			}
		}
		if got := condition(); got != kind {
			t.Fatalf("/v1/agent/self Stats.disk.condition = %q during %s", got, kind)
		}
		eventually(t, "the consul service's disk check critical during "+kind, 10*time.Second, func() (bool, string) {
			return diskCheck(t, c) == "critical "+kind, diskCheck(t, c)
		})
	}
	resumes := func(what string) {
		t.Helper()
		eventually(t, "writes resuming after "+what, 20*time.Second, func() (bool, string) {
			code, body := put()
			return code == 200, fmt.Sprintf("%d %s", code, body)
		})
		if got := condition(); got != "ok" {
			t.Fatalf("Stats.disk.condition = %q after %s; want ok", got, what)
		}
		eventually(t, "the disk check gone after "+what, 10*time.Second, func() (bool, string) {
			got := diskCheck(t, c)
			return got == "", got
		})
		if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("before")}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Full: a file takes what is left.
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	checkFault("disk full", http.StatusInsufficientStorage)
	os.Remove(filler)
	resumes("freeing space")
}

// diskCheck is the status and condition of the server's disk check on
// its "consul" service ("critical disk full"), "" when there is none.
func diskCheck(t *testing.T, c *api.Client) string {
	t.Helper()
	chs, _, err := c.Health().Checks("consul", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if ch.CheckID == "cairn-disk" {
			kind, _, _ := strings.Cut(ch.Output, " since ")
			return ch.Status + " " + kind
		}
	}
	return ""
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
