package registrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Version is the registrator release reported by -version.
const Version = "0.1.0-cairn"

// Config is every registrator option. The zero value (plus a Hostname from
// the OS) is upstream registrator's default behaviour. cmd/registrator maps
// each flag to one field.
type Config struct {
	// HostIP (-ip) is the address registered for published ports,
	// instead of the one the hostname resolves to.
	HostIP string
	// Internal (-internal) registers the container's own address and
	// exposed port instead of the host's address and published port.
	Internal bool
	// Explicit (-explicit) registers only containers with a SERVICE_NAME
	// (or SERVICE_<port>_NAME) label or env var.
	Explicit bool
	// UseIPFromLabel (-useIpFromLabel) names a container label whose value
	// (an address, optionally with a /prefix) overrides the address.
	UseIPFromLabel string
	// Tags (-tags) are added to every service: a comma list, or a Go
	// template over the container's inspect data (Container) that renders
	// to one ("{{.Config.Hostname}},prod").
	Tags string
	// TTL (-ttl) is the TTL of the check registrator heartbeats itself
	// (Service.Status); 0 means DefaultStatusTTL.
	TTL time.Duration
	// TTLRefresh (-ttl-refresh) is how often that check is heartbeated;
	// 0 means TTL/3.
	TTLRefresh time.Duration
	// Resync (-resync) is the period of a full resync; 0 means none
	// (a full resync still happens on start and after an engine restart).
	Resync time.Duration
	// Deregister (-deregister) is "always" (default) or "on-success": keep
	// the registrations of a container that exited with a non-zero code
	// (it may be restarted) until it starts again or is removed.
	Deregister string
	// DrainGrace bounds how long a container sent a stopping signal
	// (Graceful drain) stays critical while it keeps running, when it
	// has no stop timeout of its own; 0 or less means DefaultDrainGrace.
	DrainGrace time.Duration
	// Cleanup (-cleanup) removes, on every resync, registrations of this
	// host (IDs with the Hostname prefix) whose containers are gone. On
	// start this sweep always runs.
	Cleanup bool
	// RetryAttempts (-retry-attempts) is how many times to retry reaching
	// the registry at start; -1 means forever.
	RetryAttempts int
	// RetryInterval (-retry-interval) is the wait between those attempts;
	// 0 means 2s.
	RetryInterval time.Duration
	// Hostname is the first part of every service ID and decides which
	// registrations this registrator owns; "" means os.Hostname(), as
	// upstream.
	Hostname string
	// Workers is how many containers are reconciled at once (one
	// container is never handled by two workers at a time); 0 means 8.
	Workers int
	// Logger receives one line per state change; nil discards.
	Logger *slog.Logger
}

// DefaultStatusTTL is the TTL of registrator's own check when -ttl is 0.
const DefaultStatusTTL = 30 * time.Second

// DefaultDrainGrace is Config.DrainGrace when it is 0: docker stop's
// default timeout (10s) and the engine's SIGKILL after it, with room.
const DefaultDrainGrace = 30 * time.Second

// DefaultConfig is upstream registrator's defaults.
func DefaultConfig() Config {
	return Config{Deregister: "always", RetryAttempts: 0, RetryInterval: 2 * time.Second}
}

// Status is the state of the check registrator drives itself from the
// container's Docker HEALTHCHECK and from graceful drain.
type Status string

// The check states, spelled as Consul spells them.
const (
	StatusNone     Status = "" // no registrator-driven check
	StatusPassing  Status = "passing"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
)

// Service is one registration: one port of one container.
type Service struct {
	ID      string
	Name    string
	Address string // upstream's IP
	Port    int
	Tags    []string
	// Meta is every SERVICE_* attribute not consumed by the model
	// (upstream's Attrs, which the consul backend sends as Meta),
	// lower-cased without the SERVICE_ / SERVICE_<port>_ prefix.
	Meta map[string]string
	// Check is the check asked for with SERVICE_CHECK_*; nil if none.
	Check *Check
	// Status, when not StatusNone, asks the backend for a second,
	// registrator-owned TTL check (ID StatusCheckID(ID), TTL StatusTTL)
	// in this state. It follows the container's HEALTHCHECK
	// (healthy=passing, starting/unhealthy=critical) and turns critical
	// when the container is being stopped.
	Status     Status
	StatusNote string
	StatusTTL  time.Duration

	// Where it came from.
	ContainerID   string
	ContainerName string // without the leading "/"
	ExposedPort   string // "80"
	PortType      string // "tcp" or "udp"
}

// VIPPortMeta is the Meta key that names the port a cairn VIP accepts
// for the service.
const VIPPortMeta = "vip_port"

// RegistryMeta is the Meta a registry stores for s: its SERVICE_*
// attributes and, when the registered port is a published one, vip_port,
// the container's own port. A published port differs from host to host
// and from one deploy to the next; the container's does not, so cairn's
// VIP for the service accepts it and every instance sits behind one
// stable VIP:port, as with Swarm. SERVICE_VIP_PORT wins.
func (s *Service) RegistryMeta() map[string]string {
	if s.ExposedPort == "" || s.ExposedPort == strconv.Itoa(s.Port) || s.Meta[VIPPortMeta] != "" {
		return s.Meta
	}
	m := maps.Clone(s.Meta)
	if m == nil {
		m = map[string]string{}
	}
	m[VIPPortMeta] = s.ExposedPort
	if s.PortType == "udp" {
		m[VIPPortMeta] += "/udp"
	}
	return m
}

// StatusCheckID is the ID of the check registrator heartbeats for service
// id (Service.Status).
func StatusCheckID(serviceID string) string { return "registrator:" + serviceID }

// Check is a health check from SERVICE_CHECK_* (consul backend semantics:
// exactly one kind is set, chosen with upstream's precedence).
type Check struct {
	HTTP          string // full URL
	Method        string
	TLSSkipVerify bool
	TCP           string // host:port
	GRPC          string // host:port
	GRPCUseTLS    bool
	Args          []string // script/cmd checks
	DockerID      string   // docker exec checks
	Shell         string
	TTL           string
	Interval      string
	Timeout       string
	InitialStatus string
	// DeregisterCriticalServiceAfter is SERVICE_CHECK_DEREGISTER_AFTER.
	DeregisterCriticalServiceAfter string
}

// Registry is where services are written: the consul and consulkv
// backends here, and the agent's in-process catalog adapter. Methods are
// called from registrator's workers, concurrently for different services,
// never concurrently for one service ID. They may block (network) and
// should honour ctx.
type Registry interface {
	// Register creates or replaces the registration s.ID.
	Register(ctx context.Context, s *Service) error
	// Deregister removes s.ID; removing an unknown ID is not an error.
	Deregister(ctx context.Context, s *Service) error
	// Refresh heartbeats s: it sets registrator's own check
	// (StatusCheckID) to s.Status and renews its TTL. Called only for
	// services with a Status, every TTLRefresh and when Status changes.
	Refresh(ctx context.Context, s *Service) error
	// Services lists the registrations the registry holds (at least ID,
	// Name, Address, Port, Tags), for the start-up and -cleanup sweeps.
	Services(ctx context.Context) ([]*Service, error)
	// Ping checks that the registry answers.
	Ping(ctx context.Context) error
}

// Engine is what registrator needs from Docker. DockerEngine implements it
// over github.com/moby/moby/client; tests use a fake.
type Engine interface {
	// Events subscribes to container events. When it returns without
	// error the subscription is established: every event after that
	// moment is delivered on the channel, in the engine's order. The
	// channel is closed when the stream ends; Err then says why.
	Events(ctx context.Context) (EventStream, error)
	// ContainerList lists the IDs of all containers, running or not.
	ContainerList(ctx context.Context) ([]string, error)
	// ContainerInspect returns one container; an error wrapping
	// ErrNotFound when it does not exist (any more).
	ContainerInspect(ctx context.Context, id string) (*Container, error)
	// ServiceLabels returns the labels of the Swarm service's spec
	// (docker service create --label), ErrNotFound when it is gone.
	ServiceLabels(ctx context.Context, serviceID string) (map[string]string, error)
}

// EventStream is a subscription to engine events.
type EventStream interface {
	// C delivers the events; it is closed when the stream ends.
	C() <-chan Event
	// Err is why the stream ended, valid after C is closed.
	Err() error
}

// ErrNotFound is wrapped by Engine errors for containers or services that
// do not exist.
var ErrNotFound = errors.New("not found")

// Event is a container event (docker events --filter type=container).
type Event struct {
	Action string            // "start", "die", "kill", "health_status: healthy", ...
	ID     string            // Actor.ID: the container ID
	Attrs  map[string]string // Actor.Attributes ("exitCode", "signal", labels, ...)
}

// Container is the part of docker inspect registrator reads. Field names
// follow the inspect JSON, so -tags templates written for upstream
// ({{.Config.Hostname}}, {{index .Config.Labels "x"}}) work unchanged.
type Container struct {
	ID              string
	Name            string // with the leading "/", as inspect has it
	Config          ContainerConfig
	HostConfig      HostConfig
	NetworkSettings NetworkSettings
	State           State
}

// ContainerConfig is inspect's .Config.
type ContainerConfig struct {
	Hostname     string
	Image        string
	Env          []string
	Labels       map[string]string
	ExposedPorts map[string]struct{} // "80/tcp"
	// StopTimeout is docker run --stop-timeout in seconds; nil when
	// unset (docker stop then waits 10s, or its own -t).
	StopTimeout *int
}

// HostConfig is inspect's .HostConfig.
type HostConfig struct {
	NetworkMode string
}

// NetworkSettings is inspect's .NetworkSettings.
type NetworkSettings struct {
	IPAddress         string // default bridge network
	GlobalIPv6Address string
	Ports             map[string][]PortBinding // "80/tcp" -> bindings
	Networks          map[string]Network
}

// PortBinding is one published port.
type PortBinding struct {
	HostIP   string
	HostPort string
}

// Network is the container's endpoint on one network.
type Network struct {
	IPAddress         string
	GlobalIPv6Address string
}

// State is inspect's .State.
type State struct {
	Running bool
	// Restarting: the engine is about to restart the container after it
	// exited (restart policy); Running is true meanwhile, as moby has it.
	Restarting bool
	Paused     bool // docker pause: registered, but critical
	ExitCode   int
	// Health is "" (no HEALTHCHECK), "starting", "healthy" or "unhealthy".
	Health string
}

// Registrator keeps a registry in step with one Docker engine. Create it
// with New and run it with Run.
type Registrator struct {
	cfg    Config
	engine Engine
	reg    Registry
	log    *slog.Logger
	tags   *tagTemplate

	st       *state
	q        *queue
	counters Counters // under st.mu
}

// New validates cfg. It starts nothing and talks to nobody.
func New(cfg Config, engine Engine, reg Registry) (*Registrator, error) {
	if engine == nil || reg == nil {
		return nil, errors.New("registrator.New: engine and registry are both required")
	}
	switch cfg.Deregister {
	case "":
		cfg.Deregister = "always"
	case "always", "on-success":
	default:
		return nil, fmt.Errorf("-deregister=%q: use always or on-success", cfg.Deregister)
	}
	if cfg.HostIP != "" {
		if _, err := netip.ParseAddr(cfg.HostIP); err != nil {
			return nil, fmt.Errorf("-ip=%q is not an IP address; give the host's address, e.g. -ip 10.0.0.5", cfg.HostIP)
		}
	}
	if cfg.TTL < 0 || cfg.TTLRefresh < 0 || cfg.Resync < 0 || cfg.RetryInterval < 0 {
		return nil, fmt.Errorf("negative durations (-ttl=%v -ttl-refresh=%v -resync=%v -retry-interval=%v): use 0 or more", cfg.TTL, cfg.TTLRefresh, cfg.Resync, cfg.RetryInterval)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultStatusTTL
	}
	if cfg.TTLRefresh == 0 {
		cfg.TTLRefresh = cfg.TTL / 3
	}
	if cfg.TTLRefresh >= cfg.TTL {
		return nil, fmt.Errorf("-ttl-refresh=%v must be shorter than -ttl=%v, or the check expires between heartbeats", cfg.TTLRefresh, cfg.TTL)
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	if cfg.RetryAttempts < -1 {
		return nil, fmt.Errorf("-retry-attempts=%d: use -1 (forever), 0 or more", cfg.RetryAttempts)
	}
	if cfg.DrainGrace <= 0 {
		cfg.DrainGrace = DefaultDrainGrace
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("cannot tell this host's name for service IDs (os.Hostname: %v); set Config.Hostname", err)
		}
		cfg.Hostname = h
	}
	if strings.Contains(cfg.Hostname, ":") {
		return nil, fmt.Errorf("hostname %q contains ':', which service IDs hostname:container:port cannot hold", cfg.Hostname)
	}
	tt, err := parseTags(cfg.Tags)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrator{cfg: cfg, engine: engine, reg: reg, log: log, tags: tt, st: newState()}, nil
}

type queuedAtKey struct{}

func withQueuedAt(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, queuedAtKey{}, t)
}

// QueuedAt is, in a Registry call, when the work that led to it was
// queued: a Docker event arriving, a full sync, a heartbeat. The time
// from it to the call's end is the registrator's lag. Zero when unknown.
func QueuedAt(ctx context.Context) time.Time {
	t, _ := ctx.Value(queuedAtKey{}).(time.Time)
	return t
}
