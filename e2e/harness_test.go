//go:build unix

package e2e

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// cairnBin is the binary under test, built once by TestMain.
var cairnBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (the tests build and run the cairn binary)")
		os.Exit(0)
	}
	// CAIRN_E2E_BIN runs the tests against a binary built elsewhere (a
	// release, or a snapshot while the tree is being edited).
	if bin := os.Getenv("CAIRN_E2E_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: CAIRN_E2E_BIN=%s: %v\n", bin, err)
			os.Exit(1)
		}
		cairnBin = abs
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "cairn-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	args := []string{"build", "-o", cairnBin}
	if os.Getenv("CAIRN_E2E_RACE") != "" {
		args = append(args, "-race") // slower to build; catches races in the real process
	}
	build := exec.Command("go", append(args, "github.com/cairn-dev/cairn/cmd/cairn")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build cmd/cairn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ports are one agent's ports, all free when picked.
type ports struct{ http, dns, serf, server int }

// freePorts picks an agent's free loopback ports. All listeners stay open
// until every port is picked, so no two picks collide.
func freePorts(t *testing.T) ports {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	pick := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port
	}
	return ports{http: pick(), dns: pick(), serf: pick(), server: pick()}
}

// flags moves every listener of an agent to p on 127.0.0.1.
func (p ports) flags() []string {
	return []string{
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p.http), "-dns-port", strconv.Itoa(p.dns),
		"-serf-lan-port", strconv.Itoa(p.serf), "-server-port", strconv.Itoa(p.server),
	}
}

func (p ports) httpAddr() string { return "127.0.0.1:" + strconv.Itoa(p.http) }

// serverArgs are the flags of a one-server cluster on dataDir.
func serverArgs(dataDir string, p ports) []string {
	return append([]string{"agent", "-server", "-bootstrap-expect", "1", "-data-dir", dataDir}, p.flags()...)
}

// proc is one running cairn process.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr
	errOut *syncBuffer // stderr alone
	done   chan struct{}
	state  *os.ProcessState
}

// start runs the binary with args until it exits or the test ends (then
// it is killed). When the test fails, its output is logged.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCommand(t, name, exec.Command(cairnBin, args...))
}

// startCommand is start for a command line of its own, such as cairn run
// by `ip netns exec` inside a network namespace.
func startCommand(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	line := strings.Join(cmd.Args, " ")
	p := &proc{t: t, name: name, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = cmd
	p.cmd.Stdout = p.out
	p.cmd.Stderr = teeWriter{p.out, p.errOut}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", line, err)
	}
	go func() {
		defer close(p.done)
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", p.name, line, p.out.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code (-1 when
// a signal killed it).
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.state.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("%s still running %v after it should have exited; output:\n%s", p.name, timeout, p.out.String())
		return 0
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// client is an official Consul API client for addr.
func client(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitLeader polls until the agent has a leader that has applied every
// earlier entry: /v1/status/leader names one and a consistent read
// succeeds (a new leader refuses those until its barrier is through).
// Polling is the only way to learn this from another process. It fails
// at once if the process exits.
func (p *proc) waitLeader(addr string) *api.Client {
	p.t.Helper()
	c := client(p.t, addr)
	deadline := time.Now().Add(20 * time.Second)
	var (
		leader string
		err    error
	)
	for time.Now().Before(deadline) {
		if p.exited() {
			p.t.Fatalf("%s exited (%v) before it had a leader; output:\n%s", p.name, p.state, p.out.String())
		}
		leader, err = c.Status().Leader()
		if err == nil && leader != "" {
			_, _, err = c.KV().Get("e2e-ready-probe", &api.QueryOptions{RequireConsistent: true})
			if err == nil {
				return c
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.t.Fatalf("%s: not ready after 20s; last leader %q, last error %v", p.name, leader, err)
	return nil
}

// cairn runs a short cairn command (such as kv get) and returns its exit
// code, stdout and stderr.
func cairn(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run cairn %s: %v", strings.Join(args, " "), err)
	}
	return code, o.String(), e.String()
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type teeWriter struct{ a, b *syncBuffer }

func (w teeWriter) Write(p []byte) (int, error) {
	w.a.Write(p)
	return w.b.Write(p)
}
