// Command failover measures a cairn cluster of processes on 127.0.0.1:
//
//   - failover: on three servers and a client agent, the time from
//     stopping the leader (SIGKILL, or SIGTERM: a graceful leave) to the
//     first write through the client agent that succeeds again, over
//     several rounds per kind of stop; the stopped server is started
//     again on its data dir between rounds;
//   - throughput: KV PUTs per second with the official client at several
//     concurrencies, against a one-server agent and, side by side, a
//     three-server cluster through the leader's HTTP API and through a
//     client agent.
//
// It starts and stops the cairn processes itself (from -bin), uses only
// 127.0.0.1, and stops everything within -timeout.
//
//	go build -o bin/cairn ./cmd/cairn
//	go run ./bench/failover -bin bin/cairn -rounds 10 -clients 16,64 -duration 5s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type config struct {
	bin      string
	bins     []string // every -bin; throughput compares them side by side
	tpRounds int      // throughput rounds per binary and target
	rounds   int
	stops    []stopMode
	clients  []int
	duration time.Duration
	verbose  bool
	bare     string // bench/barekv, loaded with -durable as the ceiling; "" for none
}

type stopMode struct {
	name string
	sig  syscall.Signal
}

var stopModes = map[string]stopMode{
	"kill": {"SIGKILL", syscall.SIGKILL},
	"term": {"SIGTERM", syscall.SIGTERM},
	"stop": {"SIGSTOP", syscall.SIGSTOP},
}

func run(args []string) error {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	bin := fs.String("bin", "bin/cairn", "the cairn binary to run; for throughput a comma-separated list compares them side by side (the first is the baseline), failover uses the first")
	tpRounds := fs.Int("throughput-rounds", 1, "throughput runs per binary, target and concurrency, taking turns; the median is reported")
	rounds := fs.Int("rounds", 10, "failover rounds per kind of stop")
	stops := fs.String("stop", "kill,term", "kinds of leader stop to measure: kill (SIGKILL), term (SIGTERM, a graceful leave), stop (SIGSTOP: a paused leader, resumed with SIGCONT after the round)")
	clients := fs.String("clients", "16,64", "comma-separated concurrent clients for the throughput runs")
	duration := fs.Duration("duration", 5*time.Second, "length of each throughput run")
	only := fs.String("only", "failover,throughput", "which measurements to run")
	timeout := fs.Duration("timeout", 20*time.Minute, "stop everything and fail after this long")
	keep := fs.Bool("keep", false, "keep the data dirs and agent logs (they are kept anyway when a measurement fails)")
	verbose := fs.Bool("v", false, "print every failover round")
	bare := fs.String("bare", "", "throughput: also load this bench/barekv binary with -durable (a server that only syncs each PUT to a log, in groups), alone and as the leader of two followers: the ceilings of a durable write on one and three servers on this machine")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; failover takes only flags", fs.Arg(0))
	}
	cfg := config{rounds: *rounds, tpRounds: *tpRounds, duration: *duration, verbose: *verbose}
	for _, b := range strings.Split(*bin, ",") {
		path, err := exec.LookPath(strings.TrimSpace(b))
		if err != nil {
			return fmt.Errorf("-bin %s: %w (build it with: go build -o bin/cairn ./cmd/cairn)", b, err)
		}
		if path, err = filepath.Abs(path); err != nil {
			return err
		}
		cfg.bins = append(cfg.bins, path)
	}
	cfg.bin = cfg.bins[0]
	if *bare != "" {
		path, err := exec.LookPath(*bare)
		if err != nil {
			return fmt.Errorf("-bare %s: %w (build it with: go build -o bin/barekv ./bench/barekv)", *bare, err)
		}
		if cfg.bare, err = filepath.Abs(path); err != nil {
			return err
		}
	}
	if cfg.tpRounds < 1 {
		return fmt.Errorf("-throughput-rounds=%d; want at least 1", cfg.tpRounds)
	}
	if cfg.rounds < 1 {
		return fmt.Errorf("-rounds=%d; want at least 1", cfg.rounds)
	}
	for _, s := range strings.Split(*stops, ",") {
		m, ok := stopModes[strings.TrimSpace(s)]
		if !ok {
			return fmt.Errorf("-stop: unknown kind %q; use kill, term, stop or a list such as kill,stop", s)
		}
		cfg.stops = append(cfg.stops, m)
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive count", s)
		}
		cfg.clients = append(cfg.clients, n)
	}
	what := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s != "failover" && s != "throughput" {
			return fmt.Errorf("-only: unknown measurement %q; use failover, throughput or both", s)
		}
		what[s] = true
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("-timeout %v reached", *timeout))
	defer cancel()

	dir, err := os.MkdirTemp("", "cairn-failover-")
	if err != nil {
		return err
	}
	for _, b := range cfg.bins {
		version, _ := exec.Command(b, "version").Output()
		fmt.Printf("cairn: %s (%s)\n", strings.TrimSpace(strings.SplitN(string(version), "\n", 2)[0]), b)
	}
	fmt.Printf("machine: %d CPUs, GOMAXPROCS %d; agents on 127.0.0.1, logs in %s\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), dir)

	err = func() error {
		if what["failover"] {
			if err := failover(ctx, cfg, dir); err != nil {
				return fmt.Errorf("measure failover: %w", err)
			}
		}
		if what["throughput"] {
			if err := throughput(ctx, cfg, dir); err != nil {
				return fmt.Errorf("measure throughput: %w", err)
			}
		}
		return nil
	}()
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%v)", err, cause)
	}
	if err != nil || *keep {
		fmt.Fprintf(os.Stderr, "agent logs and data dirs kept in %s\n", dir)
		return err
	}
	return os.RemoveAll(dir)
}
