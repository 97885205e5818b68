//go:build system && linux

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/hashicorp/consul/api"
)

// TestSystemDiskReadOnlyAndIOError: a one-server agent whose data dir is
// an ext4 file system (errors=remount-ro) on a loop device, as a
// server's disk is. Two real faults, no injection:
//
//   - A failing device: the loop device's backing file lives on a small
//     tmpfs, which the test fills, so the device's writes fail (EIO, or
//     ENOSPC passed up by the loop driver, whichever write meets it first).
//     ext4 then goes read-only by itself, as it does on a failing disk.
//   - A read-only file system: ext4's own error path (its sysfs
//     trigger_fs_error), which remounts it read-only under the agent.
//     (mount -o remount,ro is refused with EBUSY while the agent holds
//     its log open for writing, so it cannot make this happen.)
//
// Each time, writes are answered 503 naming the condition (never "no
// leader"), reads keep answering, and /v1/agent/self and the metric
// cairn_disk_condition show it. ext4 does not take a read-write remount
// after an error (it stays emergency_ro), so recovery is an operator's:
// the agent is stopped, the file system checked and mounted again, and
// the restarted agent takes writes with nothing acknowledged lost.
func TestSystemDiskReadOnlyAndIOError(t *testing.T) {
	systemtest.NeedRoot(t)
	for _, cmd := range []string{"mount", "umount", "losetup", "mkfs.ext4", "e2fsck"} {
		systemtest.NeedCommand(t, cmd)
	}
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, d *loopDisk)
		kinds []string // what the first refused write may name
	}{
		// A thin-provisioned device out of room: ext4 meets EIO on a
		// sync, or ENOSPC passed up by the loop driver, whichever
		// write comes first (both seen).
		{"failing device", func(t *testing.T, d *loopDisk) { fill(t, filepath.Join(d.backing, "filler")) }, []string{"I/O error", "read-only file system", "disk full"}},
		{"read-only file system", func(t *testing.T, d *loopDisk) {
			if err := os.WriteFile("/sys/fs/ext4/"+filepath.Base(d.dev)+"/trigger_fs_error", []byte("cairn test"), 0); err != nil {
				t.Fatalf("trigger an ext4 error: %v", err)
			}
		}, []string{"read-only file system"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			d := newLoopDisk(t)
			p := freePorts(t)
			dataDir := filepath.Join(d.mnt, "data")
			agent := start(t, "disk", serverArgs(dataDir, p)...)
			c := agent.waitLeader(p.httpAddr())
			for i := range 20 {
				if _, err := c.KV().Put(&api.KVPair{Key: fmt.Sprintf("k%d", i), Value: []byte("before")}, nil); err != nil {
					t.Fatal(err)
				}
			}

			tc.fault(t, d)
			// The fault shows on the next writes (an I/O error meets
			// the write that needs a new block).
			var code int
			var body string
			eventually(t, "a write refused for "+tc.name, 30*time.Second, func() (bool, string) {
				code, body = rawHTTPPut(t, p.httpAddr(), "k0", strings.Repeat("x", 256<<10))
				return code != http.StatusOK, fmt.Sprintf("%d %s", code, body)
			})
			named := ""
			for _, k := range tc.kinds {
				if strings.Contains(body, k) {
					named = k
				}
			}
			want := http.StatusServiceUnavailable
			if named == "disk full" {
				want = http.StatusInsufficientStorage
			}
			if code != want || named == "" || strings.Contains(body, "leader") || strings.Contains(body, "quorum") {
				t.Fatalf("PUT after %s = %d %q; want 503 naming one of %q", tc.name, code, body, tc.kinds)
			}
			t.Logf("%s: PUT answered %d %q", tc.name, code, body)
			for _, q := range []*api.QueryOptions{nil, {RequireConsistent: true}, {AllowStale: true}} {
				e, _, err := c.KV().Get("k1", q)
				if err != nil || e == nil || string(e.Value) != "before" {
					t.Fatalf("read %+v during %s = %v, %v; want \"before\" from memory", q, tc.name, e, err)
				}
			}
			self, err := c.Agent().Self()
			if err != nil {
				t.Fatal(err)
			}
			stats, _ := self["Stats"]["disk"].(map[string]any)
			if got := fmt.Sprint(stats["condition"]); got != named {
				t.Fatalf("/v1/agent/self Stats.disk = %v during %s; want condition %q", stats, tc.name, named)
			}
			metric := regexp.MustCompile(`(?m)^cairn_disk_condition\{condition="` + regexp.QuoteMeta(named) + `"\} 1$`)
			if m := scrape(t, p.httpAddr()); !metric.MatchString(m) {
				t.Fatalf("metrics during %s lack %s; cairn_disk_condition lines: %q", tc.name, metric, grepLines(m, "cairn_disk_condition"))
			}
			eventually(t, "the consul service's disk check critical during "+tc.name, 15*time.Second, func() (bool, string) {
				got := diskCheck(t, c)
				return strings.HasPrefix(got, "critical "), got
			})

			// Recovery: stop, check, mount again, start.
			agent.signal(syscall.SIGTERM)
			agent.wait(30 * time.Second)
			d.repair(t)
			agent = start(t, "disk (restarted)", serverArgs(dataDir, p)...)
			c = agent.waitLeader(p.httpAddr())
			if _, err := c.KV().Put(&api.KVPair{Key: "after", Value: []byte("ok")}, nil); err != nil {
				t.Fatalf("write after the repair: %v", err)
			}
			for i := range 20 {
				e, _, err := c.KV().Get(fmt.Sprintf("k%d", i), &api.QueryOptions{RequireConsistent: true})
				if err != nil || e == nil || string(e.Value) != "before" {
					t.Fatalf("k%d after the repair = %v, %v; want the acknowledged \"before\"", i, e, err)
				}
			}
		})
	}
}

// loopDisk is an ext4 file system on a loop device whose backing file is
// on a tmpfs of its own (smaller than the image, so filling it makes the
// device fail).
type loopDisk struct {
	backing, img, dev, mnt string
}

func newLoopDisk(t *testing.T) *loopDisk {
	t.Helper()
	d := &loopDisk{backing: t.TempDir(), mnt: t.TempDir()}
	must := func(name string, args ...string) string {
		t.Helper()
		out, err := runCmd(name, args...)
		if err != nil {
			systemtest.Need(t, name+" "+strings.Join(args, " "), fmt.Errorf("%v: %s", err, out))
		}
		return strings.TrimSpace(string(out))
	}
	must("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", d.backing)
	t.Cleanup(func() { runCmd("umount", "-l", d.backing) })
	d.img = filepath.Join(d.backing, "disk.img")
	must("truncate", "-s", "256M", d.img)
	must("mkfs.ext4", "-q", "-F", d.img)
	d.dev = must("losetup", "-f", "--show", d.img)
	t.Cleanup(func() { runCmd("losetup", "-d", d.dev) })
	must("mount", "-o", "errors=remount-ro", d.dev, d.mnt)
	t.Cleanup(func() { runCmd("umount", "-l", d.mnt) })
	return d
}

// repair is the operator's recovery: room on the backing store again,
// the file system unmounted, checked and mounted read-write.
func (d *loopDisk) repair(t *testing.T) {
	t.Helper()
	os.Remove(filepath.Join(d.backing, "filler"))
	if out, err := runCmd("umount", d.mnt); err != nil {
		t.Fatalf("umount %s: %v: %s", d.mnt, err, out)
	}
	if out, err := runCmd("e2fsck", "-fy", d.dev); err != nil {
		// Exit 1 and 2: errors found and corrected.
		if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() > 2 {
			t.Fatalf("e2fsck %s: %v: %s", d.dev, err, out)
		}
	}
	if out, err := runCmd("mount", "-o", "errors=remount-ro", d.dev, d.mnt); err != nil {
		t.Fatalf("mount %s again: %v: %s", d.dev, err, out)
	}
}

func rawHTTPPut(t *testing.T, addr, key, value string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/agent/metrics?format=prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
