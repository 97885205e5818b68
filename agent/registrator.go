package agent

import (
	"context"
	"errors"
	"fmt"
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
	rc := registrator.DefaultConfig()
	rc.Hostname = w.cfg.NodeName
	rc.HostIP = w.advertise
	rc.Logger = w.log.With("part", "registrator")
	r, err := registrator.New(rc, engine, w.tel.registry(catalogRegistry{w.cat}))
	if err != nil {
		return part{}, false, fmt.Errorf("-docker: %w", err)
	}
	return part{"registrator", r.Run}, true, nil
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
	if s.Check != nil {
		d, err := registratorCheck(s.Check)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.ID, err)
		}
		d.ID = "service:" + s.ID // registrator's ID, also beside the status check
		def.Checks = append(def.Checks, d)
	}
	if s.Status != registrator.StatusNone {
		def.Checks = append(def.Checks, checks.Definition{
			ID: registrator.StatusCheckID(s.ID), Name: "Docker container state (registrator)",
			TTL: s.StatusTTL, Status: checks.Status(s.Status), Notes: s.StatusNote,
		})
	}
	return c.cat.RegisterService(def, true)
}

// registratorCheck converts a SERVICE_CHECK_* check; the kinds cairn does
// not run (gRPC, docker exec) are refused, as the HTTP API refuses them.
func registratorCheck(ch *registrator.Check) (checks.Definition, error) {
	d := checks.Definition{
		HTTP: ch.HTTP, Method: ch.Method, TLSSkipVerify: ch.TLSSkipVerify, TCP: ch.TCP, Args: ch.Args,
		Status: checks.Status(ch.InitialStatus),
	}
	switch {
	case ch.GRPC != "":
		return d, errors.New("SERVICE_CHECK_GRPC: gRPC checks are not supported by cairn; use SERVICE_CHECK_TCP or SERVICE_CHECK_HTTP")
	case ch.DockerID != "":
		return d, errors.New("SERVICE_CHECK_DOCKER: docker exec checks are not supported by cairn; use SERVICE_CHECK_SCRIPT or a Docker HEALTHCHECK")
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
