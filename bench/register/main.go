// Command register measures service registration on real cairn (or
// Consul) agents with the official consul/api client:
//
//   - agent: -services registrations through PUT /v1/agent/service/register,
//     one after the other, each with a TTL check, timed per thousand (the
//     cost must not grow with the number already registered);
//   - catalog: PUT /v1/catalog/register of external nodes from -clients
//     concurrent workers for -duration.
//
// With -bin it starts each binary itself (a fresh single server on free
// 127.0.0.1 ports and a fresh data dir, or -dev) and runs the same load
// against each in turn, -rounds times, so the figures are side by side:
//
//	register -bin /tmp/cairn-before,/tmp/cairn-after -services 3000 -rounds 2
//
// With -addr it loads an agent already running on this machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "register:", err)
		os.Exit(1)
	}
}

type options struct {
	services int
	names    int
	clients  []int
	duration time.Duration
	modes    []string
}

func run(args []string) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	addr := fs.String("addr", "", "HTTP address of a running agent (loopback only); instead of -bin")
	bins := fs.String("bin", "", "comma-separated agent binaries to start and compare, in turn")
	dev := fs.Bool("dev", false, "start the agents with -dev instead of a single server with a data dir")
	rounds := fs.Int("rounds", 1, "rounds over -bin")
	services := fs.Int("services", 3000, "agent mode: services to register, one after the other")
	names := fs.Int("names", 100, "agent mode: service names the registrations take in turn (1: every one an instance of the same service)")
	clients := fs.String("clients", "1,16", "catalog mode: comma-separated concurrent client counts")
	duration := fs.Duration("duration", 5*time.Second, "catalog mode: how long each measurement runs")
	modes := fs.String("mode", "agent,catalog", "what to measure: agent, catalog, or both")
	keep := fs.Bool("keep", false, "keep the agents' data dirs and logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *names < 1 {
		return fmt.Errorf("-names: %d; give 1 or more", *names)
	}
	o := options{services: *services, names: *names, duration: *duration, modes: strings.Split(*modes, ",")}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive count", s)
		}
		o.clients = append(o.clients, n)
	}
	if *addr != "" {
		if err := loopback(*addr); err != nil {
			return err
		}
		return measure(*addr, "agent", o)
	}
	if *bins == "" {
		return errors.New("give -addr of a running agent or -bin of binaries to start")
	}
	dir, err := os.MkdirTemp("", "register-bench-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("data dirs and logs in", dir)
	}
	for r := range *rounds {
		for i, bin := range strings.Split(*bins, ",") {
			name := fmt.Sprintf("r%d-b%d", r, i)
			a, err := startAgent(bin, filepath.Join(dir, name), *dev)
			if err != nil {
				return fmt.Errorf("%s: %w", bin, err)
			}
			fmt.Printf("== round %d: %s\n", r+1, bin)
			err = measure(a.httpAddr, bin, o)
			a.stop()
			if err != nil {
				return fmt.Errorf("%s: %w (log: %s)", bin, err, a.logPath)
			}
		}
	}
	return nil
}

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q is not a loopback address; register only loads this machine", addr)
	}
	return nil
}

func newClient(addr string) (*api.Client, error) {
	transport := &http.Transport{MaxIdleConnsPerHost: 1024}
	return api.NewClient(&api.Config{Address: addr, HttpClient: &http.Client{Transport: transport}})
}

func measure(addr, label string, o options) error {
	c, err := newClient(addr)
	if err != nil {
		return err
	}
	for _, m := range o.modes {
		switch strings.TrimSpace(m) {
		case "agent":
			if err := agentRegistrations(c, o.services, o.names); err != nil {
				return err
			}
		case "catalog":
			for _, n := range o.clients {
				if err := catalogRegistrations(c, n, o.duration); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("-mode: %q is neither agent nor catalog", m)
		}
	}
	return nil
}

// agentRegistrations registers n service instances, under names service
// names in turn, one after the other and prints the time each thousand
// took.
func agentRegistrations(c *api.Client, n, names int) error {
	start := time.Now()
	last := start
	var lats []time.Duration
	fmt.Printf("agent register: %d services under %d names, one client\n%8s %10s %10s %10s\n", n, names, "upto", "per 1000", "p50", "p99")
	for i := range n {
		t := time.Now()
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: fmt.Sprintf("bench-%06d", i), Name: fmt.Sprintf("bench-%d", i%names), Port: 10000 + i%50000,
			Tags: []string{"v1"}, Meta: map[string]string{"version": "1"},
			Check: &api.AgentServiceCheck{TTL: "1h", Status: "passing"},
		})
		if err != nil {
			return fmt.Errorf("registration %d: %w", i, err)
		}
		lats = append(lats, time.Since(t))
		if (i+1)%1000 == 0 || i+1 == n {
			now := time.Now()
			slices.Sort(lats)
			fmt.Printf("%8d %10v %10v %10v\n", i+1, now.Sub(last).Round(time.Millisecond),
				lats[len(lats)/2].Round(time.Microsecond), lats[len(lats)*99/100].Round(time.Microsecond))
			last, lats = now, lats[:0]
		}
	}
	fmt.Printf("total %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// catalogRegistrations registers external nodes (a service and a check
// each) from n workers for d.
func catalogRegistrations(c *api.Client, n int, d time.Duration) error {
	var (
		ok, bad  atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		wg       sync.WaitGroup
		firstErr error
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			var local []time.Duration
			for i := 0; ctx.Err() == nil; i++ {
				node := fmt.Sprintf("ext-%d-%d", w, i)
				t := time.Now()
				_, err := c.Catalog().Register(&api.CatalogRegistration{
					Node: node, Address: "10.1.2.3",
					Service: &api.AgentService{ID: "db", Service: "db", Port: 5432},
					Check:   &api.AgentCheck{CheckID: "db", Name: "db", Status: "passing", ServiceID: "db"},
				}, nil)
				if err != nil {
					bad.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lats)
	var p50, p99 time.Duration
	if len(lats) > 0 {
		p50, p99 = lats[len(lats)/2], lats[len(lats)*99/100]
	}
	fmt.Printf("catalog register: %3d clients %8.0f/s  p50 %v  p99 %v  errors %d\n", n, float64(ok.Load())/el.Seconds(),
		p50.Round(time.Microsecond), p99.Round(time.Microsecond), bad.Load())
	if firstErr != nil && ok.Load() == 0 {
		return firstErr
	}
	return nil
}

type agent struct {
	cmd      *exec.Cmd
	httpAddr string
	logPath  string
	done     chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAgent starts bin as a single server (or -dev) on free loopback
// ports and waits until it has a leader.
func startAgent(bin, dir string, dev bool) (*agent, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	args := []string{"agent", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", "bench",
		"-http-port", strconv.Itoa(ports[0]), "-server-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]), "-dns-port", "-1"}
	if dev {
		args = append(args, "-dev")
	} else {
		args = append(args, "-server", "-bootstrap-expect", "1", "-data-dir", filepath.Join(dir, "data"))
	}
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	a := &agent{cmd: cmd, httpAddr: "127.0.0.1:" + strconv.Itoa(ports[0]), logPath: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(a.done) }()
	c, err := newClient(a.httpAddr)
	if err != nil {
		a.stop()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l, err := c.Status().Leader(); err == nil && l != "" {
			return a, nil
		}
		select {
		case <-a.done:
			return nil, fmt.Errorf("the agent exited; see %s", logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("no leader after 30s; see %s", logPath)
		}
	}
}

func (a *agent) stop() {
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}
