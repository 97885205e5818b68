package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// ports are one agent's ports, all on 127.0.0.1.
type ports struct{ http, dns, serf, server int }

// Ports come from below the kernel's ephemeral range (32768-60999 on
// Linux), so no outgoing connection holds a stopped server's port when it
// is started again on the same ports.
const portLo, portHi = 20000, 32000

var (
	pickedMu sync.Mutex
	picked   = map[int]bool{}
)

func pickPorts() (ports, error) {
	pickedMu.Lock()
	defer pickedMu.Unlock()
	var out [4]int
	for i := range out {
		for tries := 0; ; tries++ {
			if tries == 1000 {
				return ports{}, fmt.Errorf("no free port in %d-%d on 127.0.0.1", portLo, portHi)
			}
			p := portLo + rand.IntN(portHi-portLo)
			if !picked[p] && bindable(p) {
				picked[p] = true
				out[i] = p
				break
			}
		}
	}
	return ports{http: out[0], dns: out[1], serf: out[2], server: out[3]}, nil
}

// bindable: the port is free for TCP and UDP (gossip uses both).
func bindable(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// agent is one cairn process, restartable on the same ports and data dir.
type agent struct {
	name    string
	server  bool
	expect  int
	ports   ports
	dataDir string
	logPath string
	api     *api.Client

	cmd       *exec.Cmd
	done      chan struct{}
	err       error // Wait's result, once done is closed
	signalled bool  // a stop signal was sent to this run (see signal)
}

// signal sends sig to the running process and remembers it, so stop
// waits instead of signalling twice.
func (a *agent) signal(sig syscall.Signal) error {
	a.signalled = true
	return a.cmd.Process.Signal(sig)
}

func (a *agent) args(join string) []string {
	args := []string{"agent", "-node", a.name, "-data-dir", a.dataDir}
	if a.server {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(a.expect))
	}
	args = append(args,
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports.http), "-dns-port", strconv.Itoa(a.ports.dns),
		"-serf-lan-port", strconv.Itoa(a.ports.serf), "-server-port", strconv.Itoa(a.ports.server))
	if join != "" {
		args = append(args, "-retry-join", join)
	}
	return args
}

// start runs the agent, appending its output to its log file.
func (a *agent) start(bin, join string) error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(a.args(join), " "))
	cmd := exec.Command(bin, a.args(join)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", a.name, err)
	}
	a.cmd, a.done, a.signalled = cmd, make(chan struct{}), false
	go func() {
		a.err = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	return nil
}

func (a *agent) running() bool {
	if a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the process to exit.
func (a *agent) stop(sig syscall.Signal, within time.Duration) error {
	if !a.running() {
		return nil
	}
	if !a.signalled {
		if err := a.cmd.Process.Signal(sig); err != nil {
			return fmt.Errorf("signal %v to %s: %w", sig, a.name, err)
		}
	}
	// A second SIGTERM kills an agent that is still leaving (cairn's
	// escape hatch for a hung stop), so a signalled agent is only waited for.
	select {
	case <-a.done:
	case <-time.After(within):
		a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("%s still running %v after %v; killed it (log: %s)", a.name, within, sig, a.logPath)
	}
	if sig == syscall.SIGTERM && a.err != nil {
		return fmt.Errorf("%s exited with %v after SIGTERM; want 0 (log: %s)", a.name, a.err, a.logPath)
	}
	return nil
}

// cluster is servers (s0, s1, ...) and clients (c0, ...), each started
// with -retry-join to s0's gossip address.
type cluster struct {
	bin     string
	servers []*agent
	clients []*agent
}

func startCluster(ctx context.Context, bin, dir, name string, servers, clients int) (*cluster, error) {
	c := &cluster{bin: bin}
	transport := &http.Transport{MaxIdleConnsPerHost: 2048}
	mk := func(n string, server bool) (*agent, error) {
		p, err := pickPorts()
		if err != nil {
			return nil, err
		}
		cl, err := api.NewClient(&api.Config{Address: addr(p.http), HttpClient: &http.Client{Transport: transport, Timeout: 10 * time.Second}})
		if err != nil {
			return nil, err
		}
		return &agent{
			name: n, server: server, expect: servers, ports: p, api: cl,
			dataDir: filepath.Join(dir, name, n), logPath: filepath.Join(dir, name, n+".log"),
		}, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		return nil, err
	}
	for i := range servers {
		a, err := mk(fmt.Sprintf("s%d", i), true)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, a)
	}
	for i := range clients {
		a, err := mk(fmt.Sprintf("c%d", i), false)
		if err != nil {
			return nil, err
		}
		c.clients = append(c.clients, a)
	}
	join := addr(c.servers[0].ports.serf)
	for _, a := range c.all() {
		if err := a.start(bin, join); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitHealthy(ctx, "", ""); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

func (c *cluster) all() []*agent { return append(slices.Clone(c.servers), c.clients...) }

// close kills every process of the cluster.
func (c *cluster) close() {
	for _, a := range c.all() {
		if a.running() {
			a.cmd.Process.Kill()
			<-a.done
		}
	}
}

// restart starts a stopped server again, joining through a running one.
func (c *cluster) restart(a *agent) error {
	join := addr(c.servers[0].ports.serf)
	for _, s := range c.servers {
		if s != a && s.running() {
			join = addr(s.ports.serf)
			break
		}
	}
	return a.start(c.bin, join)
}

// leader is the running server that names itself leader, or nil.
func (c *cluster) leader() *agent {
	for _, s := range c.servers {
		if !s.running() {
			continue
		}
		if l, err := s.api.Status().Leader(); err == nil && l == addr(s.ports.server) {
			return s
		}
	}
	return nil
}

// waitHealthy polls (the only way to learn another process's state)
// until every agent runs and knows the same leader, every member is
// alive on every agent, all servers are voters, a consistent write and
// read go through, and (when key is set) every server's own copy of key
// holds value.
func (c *cluster) waitHealthy(ctx context.Context, key, value string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last string
	for {
		ok, state := c.healthy(key, value)
		if ok {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy within 60s; last seen: %s", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *cluster) healthy(key, value string) (bool, string) {
	leader := c.leader()
	if leader == nil {
		return false, "no leader"
	}
	want := addr(leader.ports.server)
	for _, a := range c.all() {
		if !a.running() {
			return false, a.name + " exited: " + fmt.Sprint(a.err)
		}
		if l, err := a.api.Status().Leader(); err != nil || l != want {
			return false, fmt.Sprintf("%s: leader %q %v, want %s", a.name, l, err, want)
		}
		ms, err := a.api.Agent().Members(false)
		if err != nil {
			return false, a.name + ": members: " + err.Error()
		}
		alive := 0
		for _, m := range ms {
			if m.Status == 1 {
				alive++
			}
		}
		if alive != len(c.all()) {
			return false, fmt.Sprintf("%s: %d alive members, want %d", a.name, alive, len(c.all()))
		}
	}
	cfg, err := leader.api.Operator().RaftGetConfiguration(nil)
	if err != nil {
		return false, "raft configuration: " + err.Error()
	}
	voters := 0
	for _, s := range cfg.Servers {
		if s.Voter {
			voters++
		}
	}
	if voters != len(c.servers) {
		return false, fmt.Sprintf("%d voters, want %d", voters, len(c.servers))
	}
	if _, err := leader.api.KV().Put(&api.KVPair{Key: "bench/ready", Value: []byte("1")}, nil); err != nil {
		return false, "write: " + err.Error()
	}
	if key != "" {
		for _, s := range c.servers {
			kv, _, err := s.api.KV().Get(key, &api.QueryOptions{AllowStale: true})
			if err != nil || kv == nil || string(kv.Value) != value {
				return false, fmt.Sprintf("%s: stale read of %s = %v, %v; want %q", s.name, key, kv, err, value)
			}
		}
	}
	return true, ""
}
