// Package netnstest gives tests hosts of their own: Linux network
// namespaces made with iproute2 (`ip netns add`), joined by veth pairs,
// with TCP echo servers listening inside them. A test uses only the
// addresses it gives these namespaces; the host's network is never
// touched. Everything made is removed in t.Cleanup. It imports nothing
// of cairn's but systemtest.
package netnstest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-dev/cairn/systemtest"
)

// Need stops the test unless it can make namespaces: root and ip
// (a skip outside CI, a failure under CI=true).
func Need(t testing.TB) {
	t.Helper()
	systemtest.NeedRoot(t)
	systemtest.NeedCommand(t, "ip")
}

var counter atomic.Int64

// New makes a namespace named <prefix>-<pid>-<n>-<role> with loopback
// up, deleted at cleanup, and returns its name.
func New(t testing.TB, prefix, role string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), counter.Add(1), role)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	IP(t, name, "link set lo up")
	return name
}

// Run runs a command and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// IP runs `ip -n ns args...`.
func IP(t testing.TB, ns, args string) {
	t.Helper()
	Run(t, "ip", append([]string{"-n", ns}, strings.Fields(args)...)...)
}

// Sysctl sets a sysctl inside the namespace.
func Sysctl(t testing.TB, ns, key, value string) {
	t.Helper()
	err := Do(ns, func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, ns, err)
	}
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// opens stay in the namespace after it returns. The thread goes back to
// its namespace afterwards, or is retired if it cannot.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return // the locked thread is retired with the goroutine
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Link joins two namespaces with a veth pair: aName (with aCIDR, ""
// for no address) in a, bName/bCIDR in b.
func Link(t testing.TB, a, aName, aCIDR, b, bName, bCIDR string) {
	t.Helper()
	IP(t, a, fmt.Sprintf("link add %s type veth peer name %s netns %s", aName, bName, b))
	if aCIDR != "" {
		IP(t, a, fmt.Sprintf("addr add %s dev %s", aCIDR, aName))
	}
	IP(t, b, fmt.Sprintf("addr add %s dev %s", bCIDR, bName))
	IP(t, a, "link set "+aName+" up")
	IP(t, b, "link set "+bName+" up")
}

// EchoServer is a TCP server in a namespace, like a container's: to
// each connection it first writes its name and a newline (Greet reads
// it), then echoes what it reads.
type EchoServer struct {
	Name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// Serve starts an EchoServer named name on addr inside ns; it and its
// connections are closed at cleanup.
func Serve(t testing.TB, ns, name, addr string) *EchoServer {
	t.Helper()
	s := &EchoServer{Name: name, conns: map[net.Conn]bool{}}
	err := Do(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	s.wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.track(c, true)
			conns.Go(func() {
				defer s.track(c, false)
				if _, err := io.WriteString(c, s.Name+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(s.close)
	return s
}

func (s *EchoServer) track(c net.Conn, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open {
		s.conns[c] = true
		return
	}
	delete(s.conns, c)
	c.Close()
}

func (s *EchoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Greet reads an EchoServer's name from a new connection: which server
// answered. It closes c when the greeting cannot be read.
func Greet(c net.Conn, addr string) (net.Conn, string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, strings.TrimSuffix(line, "\n"), nil
}

// Refused reports whether a failed connect was refused (a TCP reset or
// an ICMP host unreachable) rather than, say, timed out.
func Refused(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH)
}
