package registrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// DockerEngine is Engine over the engine's own Go client
// (github.com/moby/moby/client); the API version is negotiated.
type DockerEngine struct {
	cli *client.Client
}

// NewDockerEngine connects lazily to host (a DOCKER_HOST value such as
// unix:///var/run/docker.sock or tcp://127.0.0.1:2375); "" means
// DOCKER_HOST, else the engine's usual socket. DOCKER_TLS_VERIFY,
// DOCKER_CERT_PATH and DOCKER_API_VERSION are honoured as the docker CLI
// does.
func NewDockerEngine(host string) (*DockerEngine, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w (set DOCKER_HOST to the engine's socket, e.g. unix:///var/run/docker.sock)", host, err)
	}
	return &DockerEngine{cli: cli}, nil
}

// Host is the engine address in use.
func (d *DockerEngine) Host() string { return d.cli.DaemonHost() }

// Close releases the client's connections.
func (d *DockerEngine) Close() error { return d.cli.Close() }

type dockerStream struct {
	c   chan Event
	err error
}

func (s *dockerStream) C() <-chan Event { return s.c }
func (s *dockerStream) Err() error      { return s.err }

// Events subscribes to container events and to network connect and
// disconnect (which change a container's addresses; they are delivered
// as Action "network:connect" / "network:disconnect" with the container's
// ID). The client returns once the engine has answered the subscription.
func (d *DockerEngine) Events(ctx context.Context) (EventStream, error) {
	res := d.cli.Events(ctx, client.EventsListOptions{
		Filters: client.Filters{}.Add("type", "container", "network"),
	})
	s := &dockerStream{c: make(chan Event, 64)}
	// An immediate failure (engine down) is already waiting on Err.
	select {
	case err := <-res.Err:
		if err == nil {
			err = fmt.Errorf("event stream closed at once")
		}
		return nil, fmt.Errorf("subscribe to docker events at %s: %w", d.cli.DaemonHost(), err)
	default:
	}
	go func() { // owned by the stream: ends when the engine's stream does
		defer close(s.c)
		for {
			select {
			case m, ok := <-res.Messages:
				if !ok {
					s.err = <-res.Err
					return
				}
				ev := Event{Action: string(m.Action), ID: m.Actor.ID, Attrs: m.Actor.Attributes}
				if m.Type == "network" {
					if m.Action != "connect" && m.Action != "disconnect" {
						continue
					}
					ev = Event{Action: "network:" + string(m.Action), ID: m.Actor.Attributes["container"], Attrs: m.Actor.Attributes}
				}
				if ev.ID == "" {
					continue
				}
				select {
				case s.c <- ev:
				case <-ctx.Done():
					s.err = ctx.Err()
					return
				}
			case err := <-res.Err:
				s.err = err
				return
			}
		}
	}()
	return s, nil
}

// ContainerList lists every container's ID, running or not.
func (d *DockerEngine) ContainerList(ctx context.Context) ([]string, error) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers at %s: %w", d.cli.DaemonHost(), err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// inspectJSON is the part of the inspect JSON registrator reads. It is
// decoded from the raw answer, which keeps fields (NetworkSettings.
// IPAddress) that the newest API types dropped but API 1.41 engines send.
type inspectJSON struct {
	ID              string
	Name            string
	Config          ContainerConfig
	HostConfig      HostConfig
	NetworkSettings struct {
		IPAddress         string
		GlobalIPv6Address string
		Ports             map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
		Networks map[string]Network
	}
	State struct {
		Running    bool
		Restarting bool
		Paused     bool
		ExitCode   int
		Health     *struct{ Status string }
	}
}

// ContainerInspect inspects one container.
func (d *DockerEngine) ContainerInspect(ctx context.Context, id string) (*Container, error) {
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("inspect container %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return decodeInspect(res.Raw)
}

func decodeInspect(raw []byte) (*Container, error) {
	var in inspectJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("decode container inspect: %w", err)
	}
	c := &Container{ID: in.ID, Name: in.Name, Config: in.Config, HostConfig: in.HostConfig}
	ns := &c.NetworkSettings
	ns.IPAddress = in.NetworkSettings.IPAddress
	ns.GlobalIPv6Address = in.NetworkSettings.GlobalIPv6Address
	ns.Networks = in.NetworkSettings.Networks
	if len(in.NetworkSettings.Ports) > 0 {
		ns.Ports = map[string][]PortBinding{}
		for k, bs := range in.NetworkSettings.Ports {
			var out []PortBinding
			for _, b := range bs {
				out = append(out, PortBinding{HostIP: b.HostIP, HostPort: b.HostPort})
			}
			ns.Ports[k] = out
		}
	}
	c.State = State{Running: in.State.Running, Restarting: in.State.Restarting, Paused: in.State.Paused, ExitCode: in.State.ExitCode}
	if h := in.State.Health; h != nil && h.Status != "none" {
		c.State.Health = h.Status
	}
	return c, nil
}

// ServiceLabels returns a Swarm service's spec labels.
func (d *DockerEngine) ServiceLabels(ctx context.Context, serviceID string) (map[string]string, error) {
	res, err := d.cli.ServiceInspect(ctx, serviceID, client.ServiceInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("inspect swarm service %s: %w", serviceID, ErrNotFound)
		}
		return nil, fmt.Errorf("inspect swarm service %s: %w", serviceID, err)
	}
	return res.Service.Spec.Labels, nil
}

// Hostname is docker info's Name.
func (d *DockerEngine) Hostname(ctx context.Context) (string, error) {
	res, err := d.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("docker info at %s: %w", d.cli.DaemonHost(), err)
	}
	return res.Info.Name, nil
}

// Exec runs cmd inside container id (docker exec, no TTY), copies what it
// writes to stdout and stderr into out, and returns its exit code. It is
// what Consul's Docker checks do (DockerContainerID and Args); the agent's
// check runner uses it. When ctx ends first, the command is left to the
// engine and ctx's error is returned.
func (d *DockerEngine) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	created, err := d.cli.ExecCreate(ctx, id, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		return 0, fmt.Errorf("docker exec create in %s: %w", short(id), err)
	}
	att, err := d.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, fmt.Errorf("docker exec start in %s: %w", short(id), err)
	}
	stop := context.AfterFunc(ctx, att.Close) // unblocks the copy
	_, err = stdcopy.StdCopy(out, out, att.Reader)
	stop()
	att.Close()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("docker exec output from %s: %w", short(id), err)
	}
	// The output ends when the process does; the engine records its
	// exit code a moment later.
	for {
		in, err := d.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, fmt.Errorf("docker exec inspect in %s: %w", short(id), err)
		}
		if !in.Running {
			return in.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond): // no event for it: poll until ctx's deadline
		}
	}
}
