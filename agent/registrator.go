package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/registrator"
)

// registratorPart runs the registrator in-process (-docker): Docker
// containers on this host become services of this agent's own catalog,
// under the same rules as the standalone registrator. IDs are
// <node name>:<container>:<port>[:udp] and published ports are registered
// at the advertise address; the catalog keeps them in the data dir, so
// after a restart the registrator's start-up sweep removes those whose
// containers are gone.
func (w *wiring) registratorPart() (part, bool, error) {
	if !w.cfg.Docker {
		return part{}, false, nil
	}
	engine, err := registrator.NewDockerEngine(w.cfg.DockerHost)
	if err != nil {
		return part{}, false, fmt.Errorf("-docker: %w", err)
	}
	w.onClose(engine.Close)
	rc := w.cfg.DockerOptions.registratorConfig(w.cfg.NodeName, w.advertise)
	rc.Logger = w.log.With("part", "registrator")
	r, err := registrator.New(rc, engine, w.tel.registry(catalogRegistry{w.cat}))
	if err != nil {
		return part{}, false, fmt.Errorf("-docker: %w", err)
	}
	return part{"registrator", r.Run}, true, nil
}

// DockerOptions are registrator's options for the in-process registrator
// (-docker): the flags of `registrator` as -docker-<flag>, and the keys
// of a config file's docker { } block. The zero value is registrator's
// defaults.
type DockerOptions struct {
	// Internal (-docker-internal, internal) registers the container's own
	// address and exposed port instead of the host's and the published one.
	Internal bool
	// IP (-docker-ip, ip) is the address of published ports; "" means
	// the agent's advertise address.
	IP string
	// Tags (-docker-tags, tags) are added to every service: a comma list
	// or a Go template over the container's inspect data.
	Tags string
	// Explicit (-docker-explicit, explicit) registers only containers
	// with SERVICE_NAME or SERVICE_<port>_NAME.
	Explicit bool
	// UseIPFromLabel (-docker-use-ip-from-label, use_ip_from_label) names
	// a container label whose value is the address to register.
	UseIPFromLabel string
	// Resync (-docker-resync, resync) is the period of a full resync; 0
	// means only at start and after the engine comes back.
	Resync time.Duration
	// Cleanup (-docker-cleanup, cleanup) removes, on every resync, this
	// node's registrations whose containers are gone (the start-up sweep
	// always does).
	Cleanup bool
	// Deregister (-docker-deregister, deregister) is "always" ("" too) or
	// "on-success".
	Deregister string
	// TTL and TTLRefresh (-docker-ttl, -docker-ttl-refresh; ttl,
	// ttl_refresh) size the container-state check (Docker HEALTHCHECK and
	// drain); 0 means registrator's defaults (30s, TTL/3).
	TTL, TTLRefresh time.Duration
}

// validate reports the first option that cannot work, naming its flag.
func (o DockerOptions) validate() error {
	switch o.Deregister {
	case "", "always", "on-success":
	default:
		return fmt.Errorf("-docker-deregister=%q: use always or on-success", o.Deregister)
	}
	if o.IP != "" {
		if _, err := netip.ParseAddr(o.IP); err != nil {
			return fmt.Errorf("-docker-ip=%q is not an IP address; give the address published ports are reached on, e.g. 10.0.0.5, or drop it for the advertise address", o.IP)
		}
	}
	if err := registrator.TagTemplateError(o.Tags); err != nil {
		return fmt.Errorf("-docker-tags=%q is not a valid Go template (%v); give a comma list, or a template like '{{.Config.Hostname}},prod'", o.Tags, err)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"-docker-resync", o.Resync}, {"-docker-ttl", o.TTL}, {"-docker-ttl-refresh", o.TTLRefresh}} {
		if d.v < 0 {
			return fmt.Errorf("%s=%v is negative; use 0 for the default", d.flag, d.v)
		}
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = registrator.DefaultStatusTTL
	}
	if o.TTLRefresh >= ttl {
		return fmt.Errorf("-docker-ttl-refresh=%v must be shorter than -docker-ttl=%v, or the container-state check expires between renewals", o.TTLRefresh, ttl)
	}
	return nil
}

// registratorConfig is the registrator's Config for this agent: service
// IDs start with the node name, published ports are at the advertise
// address unless IP says otherwise.
func (o DockerOptions) registratorConfig(nodeName, advertise string) registrator.Config {
	rc := registrator.DefaultConfig()
	rc.Hostname = nodeName
	rc.HostIP = advertise
	if o.IP != "" {
		rc.HostIP = o.IP
	}
	rc.Internal, rc.Explicit, rc.UseIPFromLabel, rc.Tags = o.Internal, o.Explicit, o.UseIPFromLabel, o.Tags
	rc.Resync, rc.Cleanup, rc.TTL, rc.TTLRefresh = o.Resync, o.Cleanup, o.TTL, o.TTLRefresh
	if o.Deregister != "" {
		rc.Deregister = o.Deregister
	}
	return rc
}

// fileDocker is a config file's docker { } block: -docker (enabled),
// -docker-host (host) and DockerOptions. Durations are strings ("30s").
type fileDocker struct {
	Enabled        *bool   `hcl:"enabled"`
	Host           *string `hcl:"host"`
	Internal       *bool   `hcl:"internal"`
	IP             *string `hcl:"ip"`
	Tags           *string `hcl:"tags"`
	Explicit       *bool   `hcl:"explicit"`
	UseIPFromLabel *string `hcl:"use_ip_from_label"`
	Resync         *string `hcl:"resync"`
	Cleanup        *bool   `hcl:"cleanup"`
	Deregister     *string `hcl:"deregister"`
	TTL            *string `hcl:"ttl"`
	TTLRefresh     *string `hcl:"ttl_refresh"`
}

func (d *fileDocker) apply(c *Config) error {
	set(&c.Docker, d.Enabled)
	set(&c.DockerHost, d.Host)
	o := &c.DockerOptions
	set(&o.Internal, d.Internal)
	set(&o.IP, d.IP)
	set(&o.Tags, d.Tags)
	set(&o.Explicit, d.Explicit)
	set(&o.UseIPFromLabel, d.UseIPFromLabel)
	set(&o.Cleanup, d.Cleanup)
	set(&o.Deregister, d.Deregister)
	for _, f := range []struct {
		key string
		v   *string
		dst *time.Duration
	}{{"docker.resync", d.Resync, &o.Resync}, {"docker.ttl", d.TTL, &o.TTL}, {"docker.ttl_refresh", d.TTLRefresh, &o.TTLRefresh}} {
		if f.v == nil {
			continue
		}
		v, err := time.ParseDuration(*f.v)
		if err != nil {
			return fmt.Errorf("%s = %q is not a duration; give one with a unit, such as \"30s\"", f.key, *f.v)
		}
		*f.dst = v
	}
	return nil
}

// catalogRegistry is registrator.Registry over this agent's catalog: the
// same calls PUT /v1/agent/service/register and friends make, without the
// HTTP round trip.
type catalogRegistry struct{ cat *catalog.Catalog }

func (c catalogRegistry) Ping(ctx context.Context) error { return nil }

func (c catalogRegistry) Register(ctx context.Context, s *registrator.Service) error {
	def := catalog.ServiceDefinition{Service: catalog.Service{
		ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.RegistryMeta(),
	}}
	if s.Status != registrator.StatusNone {
		def.Checks = append(def.Checks, checks.Definition{
			ID: registrator.StatusCheckID(s.ID), Name: "Docker container state (registrator)",
			TTL: s.StatusTTL, Status: checks.Status(s.Status), Notes: s.StatusNote,
		})
	}
	if s.Check == nil {
		return c.cat.RegisterService(def, true)
	}
	d, err := registratorCheck(s.Check)
	if err == nil {
		d.ID = "service:" + s.ID // registrator's ID, also beside the status check
		withCheck := def
		withCheck.Checks = append(slices.Clone(def.Checks), d)
		err = c.cat.RegisterService(withCheck, true)
		if !errors.Is(err, catalog.ErrInvalid) {
			return err
		}
		// Refused for its check (say, a Docker check on an agent
		// without -enable-script-checks): registered all the same,
		// below, so the container is not lost.
	}
	def.Checks = append(def.Checks, unrunnableCheck(s, err))
	return c.cat.RegisterService(def, true)
}

// unrunnableCheck stands in for a SERVICE_CHECK_* check this agent
// refused: the service is registered all the same, critical, with the
// reason as the check's output, instead of being dropped (a dropped
// service looks like a container registrator never saw). It is a TTL
// check nobody renews: its status stays what it is given.
func unrunnableCheck(s *registrator.Service, why error) checks.Definition {
	return checks.Definition{
		ID: "service:" + s.ID, Name: fmt.Sprintf("Service '%s' check (not run)", s.Name),
		TTL: unrunnableTTL, Status: checks.Critical,
		Output: "registrator: the container's SERVICE_CHECK_* check cannot run on this agent: " + why.Error(),
	}
}

// unrunnableTTL is the TTL of unrunnableCheck: longer than any container
// lives, so the check keeps its output.
const unrunnableTTL = 10 * 365 * 24 * time.Hour

// registratorCheck converts a SERVICE_CHECK_* check to the agent's.
// Docker checks (SERVICE_CHECK_DOCKER) run through the engine's exec API
// and, like script checks, need -enable-script-checks.
func registratorCheck(ch *registrator.Check) (checks.Definition, error) {
	d := checks.Definition{
		HTTP: ch.HTTP, Method: ch.Method, TLSSkipVerify: ch.TLSSkipVerify, TCP: ch.TCP, Args: ch.Args,
		GRPC: ch.GRPC, GRPCUseTLS: ch.GRPCUseTLS, DockerContainerID: ch.DockerID, Shell: ch.Shell,
		Status: checks.Status(ch.InitialStatus),
	}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"SERVICE_CHECK_TTL", ch.TTL, &d.TTL},
		{"SERVICE_CHECK_INTERVAL", ch.Interval, &d.Interval},
		{"SERVICE_CHECK_TIMEOUT", ch.Timeout, &d.Timeout},
		{"SERVICE_CHECK_DEREGISTER_AFTER", ch.DeregisterCriticalServiceAfter, &d.DeregisterCriticalServiceAfter},
	} {
		if f.in == "" {
			continue
		}
		v, err := time.ParseDuration(f.in)
		if err != nil {
			return d, fmt.Errorf("%s=%q is not a duration; use e.g. 10s", f.name, f.in)
		}
		*f.out = v
	}
	return d, nil
}

func (c catalogRegistry) Deregister(ctx context.Context, s *registrator.Service) error {
	err := c.cat.DeregisterService(s.ID)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil
	}
	return err
}

func (c catalogRegistry) Refresh(ctx context.Context, s *registrator.Service) error {
	if s.Status == registrator.StatusNone {
		return nil
	}
	return c.cat.UpdateTTL(registrator.StatusCheckID(s.ID), string(s.Status), s.StatusNote)
}

func (c catalogRegistry) Services(ctx context.Context) ([]*registrator.Service, error) {
	var out []*registrator.Service
	for _, s := range c.cat.LocalServices() {
		out = append(out, &registrator.Service{ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta})
	}
	return out, nil
}

// dockerExec runs the agent's Docker checks (DockerContainerID) on the
// engine at -docker-host ($DOCKER_HOST, else the usual socket), with or
// without -docker. The client is made at the first Docker check: an
// agent that has none never touches Docker, and a DOCKER_HOST it cannot
// use only fails those checks, saying why.
func (w *wiring) dockerExec() checks.DockerExec {
	l := &lazyDocker{host: w.cfg.DockerHost}
	w.onClose(l.close)
	return l
}

type lazyDocker struct {
	host string
	mu   sync.Mutex
	eng  *registrator.DockerEngine
}

func (l *lazyDocker) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	l.mu.Lock()
	if l.eng == nil {
		eng, err := registrator.NewDockerEngine(l.host)
		if err != nil {
			l.mu.Unlock()
			return 0, err
		}
		l.eng = eng
	}
	eng := l.eng
	l.mu.Unlock()
	return eng.Exec(ctx, id, cmd, out)
}

func (l *lazyDocker) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.eng == nil {
		return nil
	}
	return l.eng.Close()
}
