// Command registrator is gliderlabs/registrator's command line on top of
// cairn's registrator package: `registrator [options] <registry URI>` with
// the same flags, SERVICE_* labels and registry URIs. It only maps flags
// to registrator.Config, picks the backend by URI scheme and runs; the
// behaviour lives in package registrator.
//
// Differences from upstream: DOCKER_HOST defaults to the engine's usual
// socket (unix:///var/run/docker.sock, not /tmp/docker.sock); -ttl and
// -ttl-refresh size the check registrator heartbeats itself (Docker
// HEALTHCHECK state and graceful drain) instead of being ignored by the
// consul backends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/registrator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// backend makes the Registry for one URI scheme.
type backend func(u *url.URL) (registrator.Registry, error)

// backends is every registry URI scheme this command knows.
func backends() map[string]backend {
	consul := func(u *url.URL) (registrator.Registry, error) { return registrator.NewConsul(u) }
	consulkv := func(u *url.URL) (registrator.Registry, error) { return registrator.NewConsulKV(u) }
	return map[string]backend{
		"consul":        consul,
		"consul-tls":    consul,
		"consul-unix":   consul,
		"consulkv":      consulkv,
		"consulkv-unix": consulkv,
	}
}

// options are the parsed command line.
type options struct {
	cfg        registrator.Config
	uri        string
	version    bool
	dockerHost string
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parse reads the command line as registrator does. Errors are
// usageError (print usage, exit 2), or flag.ErrHelp.
func parse(args []string, stderr io.Writer, getenv func(string) string) (*options, error) {
	fs := flag.NewFlagSet("registrator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage of registrator:\n")
		fmt.Fprintf(stderr, "  registrator [options] <registry URI>\n\n")
		fmt.Fprintf(stderr, "Registry URIs: consul://host:port, consul-tls://host:port, consul-unix:///path/to/sock,\n")
		fmt.Fprintf(stderr, "  consulkv://host:port/prefix, consulkv-unix:///path/to/sock:/prefix.\n")
		fmt.Fprintf(stderr, "The Docker engine is $DOCKER_HOST, else unix:///var/run/docker.sock.\n\n")
		fs.PrintDefaults()
	}
	var (
		o                               options
		ttl, ttlRefresh, resync, retryI int
	)
	fs.StringVar(&o.cfg.HostIP, "ip", "", "IP for ports mapped to the host")
	fs.BoolVar(&o.cfg.Internal, "internal", false, "Use internal ports instead of published ones")
	fs.BoolVar(&o.cfg.Explicit, "explicit", false, "Only register containers which have SERVICE_NAME label set")
	fs.StringVar(&o.cfg.UseIPFromLabel, "useIpFromLabel", "", "Use IP which is stored in a label assigned to the container")
	fs.IntVar(&ttlRefresh, "ttl-refresh", 0, "Frequency with which service TTLs are refreshed (seconds; default ttl/3)")
	fs.IntVar(&ttl, "ttl", 0, "TTL of the container-state check registrator heartbeats (seconds; default 30)")
	fs.StringVar(&o.cfg.Tags, "tags", "", "Append tags for all registered services (comma list, or a Go template over the container's inspect data)")
	fs.IntVar(&resync, "resync", 0, "Frequency with which services are resynchronized (seconds; 0: only on start and engine reconnect)")
	fs.StringVar(&o.cfg.Deregister, "deregister", "always", "Deregister exited services \"always\" or \"on-success\"")
	fs.IntVar(&o.cfg.RetryAttempts, "retry-attempts", 0, "Max retry attempts to establish a connection with the backend. Use -1 for infinite retries")
	fs.IntVar(&retryI, "retry-interval", 2000, "Interval (in millisecond) between retry-attempts.")
	fs.BoolVar(&o.cfg.Cleanup, "cleanup", false, "Remove dangling services")
	fs.BoolVar(&o.version, "version", false, "Print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()} // flag already printed it and the usage
	}
	if o.version {
		return &o, nil
	}
	fail := func(format string, a ...any) (*options, error) {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintf(stderr, "%s\n\n", msg)
		fs.Usage()
		return nil, usageError{msg}
	}
	switch {
	case fs.NArg() == 0:
		return fail("Missing required argument for registry URI.")
	case fs.NArg() > 1:
		return fail("Extra unparsed arguments: %s\nOptions should come before the registry URI argument.", strings.Join(fs.Args()[1:], " "))
	case (ttl == 0) != (ttlRefresh == 0):
		return fail("-ttl and -ttl-refresh must be specified together or not at all (got -ttl=%d -ttl-refresh=%d)", ttl, ttlRefresh)
	case ttl < 0 || ttlRefresh < 0 || resync < 0:
		return fail("-ttl=%d, -ttl-refresh=%d and -resync=%d must not be negative", ttl, ttlRefresh, resync)
	case ttl > 0 && ttl <= ttlRefresh:
		return fail("-ttl must be greater than -ttl-refresh (got -ttl=%d -ttl-refresh=%d)", ttl, ttlRefresh)
	case retryI <= 0:
		return fail("-retry-interval must be greater than 0 (got %d)", retryI)
	case o.cfg.Deregister != "always" && o.cfg.Deregister != "on-success":
		return fail("-deregister must be \"always\" or \"on-success\" (got %q)", o.cfg.Deregister)
	case o.cfg.RetryAttempts < -1:
		return fail("-retry-attempts must be -1 (forever), 0 or more (got %d)", o.cfg.RetryAttempts)
	}
	o.uri = fs.Arg(0)
	u, err := url.Parse(o.uri)
	if err != nil || u.Scheme == "" {
		return fail("Bad registry URI %q: use e.g. consul://localhost:8500", o.uri)
	}
	if _, ok := backends()[u.Scheme]; !ok {
		return fail("Unrecognized registry URI scheme %q in %q: use one of %s", u.Scheme, o.uri, strings.Join(schemes(), ", "))
	}
	o.cfg.TTL = time.Duration(ttl) * time.Second
	o.cfg.TTLRefresh = time.Duration(ttlRefresh) * time.Second
	o.cfg.Resync = time.Duration(resync) * time.Second
	o.cfg.RetryInterval = time.Duration(retryI) * time.Millisecond
	o.dockerHost = getenv("DOCKER_HOST")
	if o.dockerHost == "" {
		o.dockerHost = "unix:///var/run/docker.sock"
	}
	return &o, nil
}

func schemes() []string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(backends())) {
		s = append(s, k+"://")
	}
	return s
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parse(args, stderr, getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case o.version:
		fmt.Fprintln(stdout, registrator.Version)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	o.cfg.Logger = log
	u, _ := url.Parse(o.uri)
	reg, err := backends()[u.Scheme](u)
	if err != nil {
		log.Error("registry", "err", err)
		return 1
	}
	engine, err := registrator.NewDockerEngine(o.dockerHost)
	if err != nil {
		log.Error("docker", "err", err)
		return 1
	}
	defer engine.Close()
	r, err := registrator.New(o.cfg, engine, reg)
	if err != nil {
		log.Error("config", "err", err)
		return 2
	}
	log.Info("starting registrator", "version", registrator.Version, "registry", u.Redacted(), "docker", engine.Host())
	if err := r.Run(ctx); err != nil {
		log.Error("registrator stopped", "err", err)
		return 1
	}
	return 0
}
