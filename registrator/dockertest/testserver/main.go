// Command testserver is the program inside dockertest's FROM scratch test
// image. It serves HTTP on every TCP port it is given, echoes datagrams on
// every UDP port, and keeps a control listener on 127.0.0.1:7999 inside the
// container that tests reach with `docker exec` (the same binary with -get),
// so no test traffic has to leave the container:
//
//	GET /              the container's hostname (its short id)
//	GET /health        200 "ok" or 500 "failing", as last set
//	GET /health?set=fail|ok
//	GET /exit?code=N   exit with code N at once (a crash: Docker's "die" without stop/kill)
//
// SIGTERM and SIGINT make it exit with -term-code (default 0), which is
// what `docker stop` and registrator's -deregister on-success look at,
// after -term-delay (a graceful shutdown that takes a while, during which
// it keeps serving).
//
// A scratch image has no shell, so HEALTHCHECK and exec'd commands run this
// same binary: -probe (GET /health on the control port, exit 0 on 200) or
// -get URL (print the body, exit 0 on 200).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ControlAddr is the in-container address of the control listener.
const controlAddr = "127.0.0.1:7999"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("testserver", flag.ContinueOnError)
	tcp := fs.String("tcp", os.Getenv("TESTSERVER_TCP"), "comma-separated TCP ports to serve HTTP on (env TESTSERVER_TCP)")
	udp := fs.String("udp", os.Getenv("TESTSERVER_UDP"), "comma-separated UDP ports to echo on (env TESTSERVER_UDP)")
	termCode := fs.Int("term-code", envInt("TESTSERVER_TERM_CODE", 0), "exit code on SIGTERM/SIGINT (env TESTSERVER_TERM_CODE)")
	termDelay := fs.Duration("term-delay", 0, "serve on for this long after SIGTERM/SIGINT before exiting")
	unhealthy := fs.Bool("unhealthy", os.Getenv("TESTSERVER_UNHEALTHY") != "", "start with /health failing (env TESTSERVER_UNHEALTHY)")
	probe := fs.Bool("probe", false, "health probe: GET /health on the control port, exit 0 on 200, 1 otherwise")
	get := fs.String("get", "", "GET this URL (a path means the control port), print the body, exit 0 on 200")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *probe:
		return fetch("/health")
	case *get != "":
		return fetch(*get)
	}
	s := &server{}
	s.failing.Store(*unhealthy)
	return s.serve(*tcp, *udp, *termCode, *termDelay)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// fetch is the client side: -probe and -get.
func fetch(target string) int {
	if strings.HasPrefix(target, "/") {
		target = "http://" + controlAddr + target
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "GET %s: %s\n", target, resp.Status)
		return 1
	}
	return 0
}

type server struct {
	failing atomic.Bool
	exit    chan int
}

func (s *server) serve(tcp, udp string, termCode int, termDelay time.Duration) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s.exit = make(chan int, 1)
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("set") {
		case "fail":
			s.failing.Store(true)
		case "ok":
			s.failing.Store(false)
		}
		if s.failing.Load() {
			http.Error(w, "failing", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "exit?code=N: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "exiting", code)
		_ = http.NewResponseController(w).Flush()
		select {
		case s.exit <- code:
		default:
		}
	})

	addrs := []string{controlAddr}
	for p := range strings.SplitSeq(tcp, ",") {
		if p = strings.TrimSpace(p); p != "" {
			addrs = append(addrs, ":"+p)
		}
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Error("listen", "addr", a, "err", err)
			return 3
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", a, "err", err)
			}
		}()
	}
	for p := range strings.SplitSeq(udp, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pc, err := net.ListenPacket("udp", ":"+p)
		if err != nil {
			log.Error("listen", "udp", p, "err", err)
			return 3
		}
		go echo(pc)
	}
	log.Info("serving", "tcp", tcp, "udp", udp, "host", host)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("signalled", "exit", termCode, "after", termDelay)
		select {
		case <-time.After(termDelay):
		case code := <-s.exit:
			return code
		}
		return termCode
	case code := <-s.exit:
		log.Info("asked to exit", "exit", code)
		return code
	}
}

func echo(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], addr)
	}
}
