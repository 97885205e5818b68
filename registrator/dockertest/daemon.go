package dockertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/moby/moby/client"
)

// Daemon is a Docker engine (dockerd) the test runs itself, with its own
// socket, data root, exec root and pid file under a temporary directory,
// so that it can be killed and restarted without touching the machine's
// engine. It runs in a network namespace of its own, has no default
// bridge and touches no iptables rules (--bridge=none, --iptables=false,
// --ip6tables=false): its containers run with network "none", and
// nothing about the host's network changes.
type Daemon struct {
	// Host is the daemon's socket, as DOCKER_HOST spells it.
	Host string

	t      testing.TB
	dir    string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// StartDaemon starts a private dockerd and waits until it answers. It
// needs root and the dockerd command (skipped without them, failed
// under CI=true). The daemon is stopped, its containers removed and its
// mounts undone when the test ends.
func StartDaemon(t testing.TB) *Daemon {
	t.Helper()
	systemtest.NeedRoot(t)
	systemtest.NeedCommand(t, "dockerd")
	// A short directory: the socket's path must fit a sockaddr_un (108
	// bytes), which a t.TempDir under a long test name may not.
	dir, err := os.MkdirTemp("", "cairn-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	// An empty config file: without --config-file, dockerd reads the
	// machine's /etc/docker/daemon.json, whose data-root and storage
	// driver belong to the machine's engine.
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Host: "unix://" + filepath.Join(dir, "docker.sock"), t: t, dir: dir, log: filepath.Join(dir, "dockerd.log")}
	t.Cleanup(d.cleanup)
	d.Start()
	return d
}

// Start starts the daemon (again, after Kill) and waits until it
// answers a ping: dockerd has then restored its containers and
// restarted those with a restart policy.
func (d *Daemon) Start() {
	d.t.Helper()
	if d.cmd != nil {
		d.t.Fatalf("dockertest: dockerd %s is already running", d.Host)
	}
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	d.starts++
	fmt.Fprintf(logf, "=== start %d\n", d.starts)
	// A pid file left by a killed daemon stops the next one.
	_ = os.Remove(filepath.Join(d.dir, "docker.pid"))
	cmd := exec.Command("dockerd",
		"--config-file", filepath.Join(d.dir, "daemon.json"),
		"--host", d.Host,
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--bridge=none", "--iptables=false", "--ip6tables=false",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// In a network namespace of its own: dockerd changes the network it
	// runs in (with --bridge=none it deletes the docker0 interface, which
	// belongs to the machine's engine), so it must not run in the host's.
	// Its containers run with network none; its socket is a file, which
	// the namespace does not hide. And it dies with the test process: a
	// killed test leaves no daemon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("dockertest: start dockerd: %v", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(d.exited)

	c, err := client.New(client.WithHost(d.Host))
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(d.t.Context(), 5*time.Second)
		_, err := c.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("dockertest: dockerd exited at start: %v\n%s", cmd.ProcessState, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("dockertest: dockerd at %s does not answer after 2m: %v\n%s", d.Host, err, d.logTail())
		}
		// No event tells that the socket is up: poll, with the deadline.
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill kills the daemon with SIGKILL (its containerd goes with it; the
// containers' shims stay, as after a crash) and waits until it is gone.
func (d *Daemon) Kill() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	// containerd's pid, to wait for it below: dockerd started it, and
	// a restart must not find it still holding its socket.
	ctrd := 0
	if b, err := os.ReadFile(filepath.Join(d.dir, "exec", "containerd", "containerd.pid")); err == nil {
		ctrd, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
	if ctrd <= 0 {
		return
	}
	// containerd dies with its parent (dockerd starts it with a parent-
	// death signal), a moment later; no event says when.
	deadline := time.Now().Add(30 * time.Second)
	for alive(ctrd) {
		if time.Now().After(deadline) {
			d.t.Logf("dockertest: containerd (pid %d) outlived dockerd by 30s; killing it", ctrd)
			_ = syscall.Kill(ctrd, syscall.SIGKILL)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Dead, but maybe a zombie until init reaps it, which the next dockerd
	// would take for a running containerd (kill -0 succeeds) and wait for
	// its socket until it gives up: drop the pid file, as a reboot would.
	_ = os.Remove(filepath.Join(d.dir, "exec", "containerd", "containerd.pid"))
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Engine returns a test Engine on the daemon, as NeedDocker does for
// the machine's engine.
func (d *Daemon) Engine() *Engine {
	d.t.Helper()
	c, err := client.New(client.WithHost(d.Host))
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(d.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		d.t.Fatalf("dockertest: ping %s: %v", d.Host, err)
	}
	return newEngine(d.t, c)
}

// logTail is the end of the daemon's log, for failure messages.
func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// cleanup removes the daemon's containers, stops it (SIGTERM, then
// SIGKILL), undoes the mounts it left under its directory and removes
// the directory.
func (d *Daemon) cleanup() {
	var errs []error
	if d.cmd != nil {
		ctx, cancel := cleanupCtx()
		if c, err := client.New(client.WithHost(d.Host)); err == nil {
			if cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
				for _, x := range cs.Items {
					if _, err := c.ContainerRemove(ctx, x.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
						errs = append(errs, err)
					}
				}
			}
			c.Close()
		}
		cancel()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			d.Kill()
		}
		d.cmd = nil
	}
	killUnder(d.dir)
	if err := unmountUnder(d.dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		d.t.Errorf("dockertest: cleaning up dockerd %s: %v", d.Host, err)
	}
}

// unmountUnder detaches every mount point under dir, deepest first
// (dockerd bind-mounts its data root and mounts each container's
// root file system under it).
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range slices.Compact(points) {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// killUnder kills what a daemon that could not be stopped cleanly left
// running: the containerd shims of its containers (their command lines
// name its exec root under dir) and the containers' processes.
func killUnder(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir+"/") || !strings.Contains(string(b), "containerd-shim") {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, c := range strings.Fields(string(children)) {
			if cpid, err := strconv.Atoi(c); err == nil {
				_ = syscall.Kill(cpid, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
