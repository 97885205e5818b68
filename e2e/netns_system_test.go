//go:build system && linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// This file is the system tests' topology kit: network namespaces made
// with iproute2 (`ip netns add`, named cairn-e2e-<pid>-<n>-<role>),
// veth pairs and bridges between them, TCP servers and clients inside
// them. Every address lives inside these namespaces (10.98.0.0/16 and
// the VIP range); the host's own network is never touched.

var nsCounter atomic.Int64

// needNetNS stops the test unless it can make namespaces (root, ip).
func needNetNS(t *testing.T) {
	t.Helper()
	systemtest.NeedRoot(t)
	systemtest.NeedCommand(t, "ip")
}

// netNS is a named network namespace (/run/netns/NAME) that the test
// created and deletes at cleanup.
type netNS struct{ name string }

// newNS makes a namespace with loopback up.
func newNS(t *testing.T, role string) netNS {
	t.Helper()
	n := netNS{name: fmt.Sprintf("cairn-e2e-%d-%d-%s", os.Getpid(), nsCounter.Add(1), role)}
	runCmd(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.ip(t, "link set lo up")
	return n
}

// ip runs `ip -n NS args...`.
func (n netNS) ip(t *testing.T, args string) {
	t.Helper()
	runCmd(t, "ip", append([]string{"-n", n.name}, strings.Fields(args)...)...)
}

// sysctl sets a sysctl inside the namespace.
func (n netNS) sysctl(t *testing.T, key, value string) {
	t.Helper()
	err := n.do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, n.name, err)
	}
}

// command is name args run inside the namespace (`ip netns exec`, which
// execs the program: the process is the program itself, so signals
// reach it directly). It is killed if the test process dies first.
func (n netNS) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func runCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// do runs fn on an OS thread that has entered the namespace. Sockets fn
// opens stay in the namespace after it returns. The thread goes back to
// its namespace afterwards, or is retired if it cannot.
func (n netNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return // the locked thread is retired with the goroutine
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
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

// dialContext opens a connection from inside the namespace.
func (n netNS) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// httpClient is an HTTP client whose connections start inside the
// namespace (an agent's API listens on its node's address there).
// Requests give up after 15 s, so a hung agent fails the test.
func (n netNS) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.dialContext, MaxIdleConnsPerHost: 4},
		Timeout:   15 * time.Second,
	}
}

// lookupA asks the DNS server at addr for name's A records, from inside
// the namespace (miekg/dns over UDP).
func (n netNS) lookupA(addr, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := n.dialContext(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	cl := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c})
	if err != nil {
		return nil, fmt.Errorf("dns %s A @%s: %w", name, addr, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("dns %s A @%s: rcode %s", name, addr, dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, nil
}

// link joins two namespaces with a veth pair: aName (aCIDR, "" for no
// address) in a, bName/bCIDR in b.
func link(t *testing.T, a netNS, aName, aCIDR string, b netNS, bName, bCIDR string) {
	t.Helper()
	a.ip(t, fmt.Sprintf("link add %s type veth peer name %s netns %s", aName, bName, b.name))
	if aCIDR != "" {
		a.ip(t, fmt.Sprintf("addr add %s dev %s", aCIDR, aName))
	}
	b.ip(t, fmt.Sprintf("addr add %s dev %s", bCIDR, bName))
	a.ip(t, "link set "+aName+" up")
	b.ip(t, "link set "+bName+" up")
}

// echoServer is a TCP server in a namespace, like a container's: to
// each connection it first writes its name and a newline, then echoes
// what it reads.
type echoServer struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
}

func serveEcho(t *testing.T, ns netNS, name, addr string) *echoServer {
	t.Helper()
	s := &echoServer{name: name}
	err := ns.do(func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.name, err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	s.wg.Go(func() {
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				if _, err := io.WriteString(c, s.name+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		s.ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// dialer opens TCP connections to echo servers from inside a namespace.
type dialer struct {
	label string // for messages: "node1", "container behind node1"
	ns    netNS
}

// dial connects to addr and reads the greeting: which server answered.
func (d dialer) dial(ctx context.Context, addr string) (net.Conn, string, error) {
	c, err := d.ns.dialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, "", err
	}
	return greet(c, addr)
}

// greet reads the server's name from a new connection.
func greet(c net.Conn, addr string) (net.Conn, string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, strings.TrimSuffix(line, "\n"), nil
}

// who makes one connection and returns which server answered.
func (d dialer) who(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, name, err := d.dial(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("connect from %s to %s: %w", d.label, addr, err)
	}
	c.Close()
	return name, nil
}

// count makes n connections to addr and counts the answering servers.
// All n connections are made from one thread inside the namespace.
func (d dialer) count(addr string, n int) (map[string]int, error) {
	got := map[string]int{}
	err := d.ns.do(func() error {
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
			cancel()
			if err != nil {
				return fmt.Errorf("connect from %s to %s (after %v): %w", d.label, addr, got, err)
			}
			c, name, err := greet(c, addr)
			if err != nil {
				return fmt.Errorf("from %s (after %v): %w", d.label, got, err)
			}
			c.Close()
			got[name]++
		}
		return nil
	})
	return got, err
}

// refused reports how a connection to addr failed: nil if it was
// refused (RST or ICMP unreachable) within timeout.
func (d dialer) refused(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, name, err := d.dial(ctx, addr)
	if err == nil {
		c.Close()
		return fmt.Errorf("connection from %s to %s was answered by %s", d.label, addr, name)
	}
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH) {
		return nil
	}
	return fmt.Errorf("connection from %s to %s failed but was not refused within %v: %w", d.label, addr, timeout, err)
}
