package registrator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ctr builds a container for the table: web image, name /web1, on the
// default bridge at 172.17.0.2.
func ctr(mod func(c *Container)) *Container {
	c := &Container{
		ID:   "0123456789abcdef0123",
		Name: "/web1",
		Config: ContainerConfig{
			Hostname: "0123456789ab",
			Image:    "registry.local:5000/team/web:1.2",
			Labels:   map[string]string{},
		},
		HostConfig: HostConfig{NetworkMode: "default"},
		NetworkSettings: NetworkSettings{
			IPAddress: "172.17.0.2",
			Networks:  map[string]Network{"bridge": {IPAddress: "172.17.0.2"}},
		},
		State: State{Running: true},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func published(c *Container, key, hostIP, hostPort string) {
	if c.NetworkSettings.Ports == nil {
		c.NetworkSettings.Ports = map[string][]PortBinding{}
	}
	if c.Config.ExposedPorts == nil {
		c.Config.ExposedPorts = map[string]struct{}{}
	}
	c.Config.ExposedPorts[key] = struct{}{}
	if hostPort == "" {
		c.NetworkSettings.Ports[key] = nil
		return
	}
	c.NetworkSettings.Ports[key] = []PortBinding{{HostIP: hostIP, HostPort: hostPort}}
}

// svc is the service registrator makes for web1 port 80 -> host 8080.
func svc(mod func(s *Service)) *Service {
	s := &Service{
		ID: "host1:web1:80", Name: "web", Address: "10.0.0.1", Port: 8080,
		ContainerID: "0123456789abcdef0123", ContainerName: "web1", ExposedPort: "80", PortType: "tcp",
	}
	if mod != nil {
		mod(s)
	}
	return s
}

var modelCases = []struct {
	name  string
	m     func(m *model)
	c     *Container
	in    inputs
	want  []*Service
	error string
}{
	{
		name: "published port: host address from the hostname, name from the image basename",
		c:    ctr(func(c *Container) { published(c, "80/tcp", "0.0.0.0", "8080") }),
		want: []*Service{svc(nil)},
	},
	{
		name: "image with digest",
		c: ctr(func(c *Container) {
			c.Config.Image = "web@sha256:abcd"
			published(c, "80/tcp", "0.0.0.0", "8080")
		}),
		want: []*Service{svc(nil)},
	},
	{
		name: "binding's own host IP is kept",
		c:    ctr(func(c *Container) { published(c, "80/tcp", "192.168.1.5", "8080") }),
		want: []*Service{svc(func(s *Service) { s.Address = "192.168.1.5" })},
	},
	{
		name: "-ip overrides the host address",
		m:    func(m *model) { m.hostIP = "10.9.9.9" },
		c:    ctr(func(c *Container) { published(c, "80/tcp", "192.168.1.5", "8080") }),
		want: []*Service{svc(func(s *Service) { s.Address = "10.9.9.9" })},
	},
	{
		name: "SERVICE_IP overrides -ip for one container",
		m:    func(m *model) { m.hostIP = "10.9.9.9" },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_IP"] = "10.1.1.1"
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "10.1.1.1" })},
	},
	{
		name: "exposed but not published: ignored",
		c:    ctr(func(c *Container) { published(c, "80/tcp", "", "") }),
	},
	{
		name: "no ports at all: ignored",
		c:    ctr(nil),
	},
	{
		name: "-internal: container address and exposed port",
		m:    func(m *model) { m.internal = true },
		c:    ctr(func(c *Container) { published(c, "80/tcp", "", "") }),
		want: []*Service{svc(func(s *Service) { s.Address = "172.17.0.2"; s.Port = 80 })},
	},
	{
		name: "SERVICE_INTERNAL=true for one container",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_INTERNAL"] = "true"
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "172.17.0.2"; s.Port = 80 })},
	},
	{
		name: "SERVICE_INTERNAL=false beats -internal",
		m:    func(m *model) { m.internal = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_INTERNAL"] = "false"
		}),
		want: []*Service{svc(nil)},
	},
	{
		name: "--net=host: exposed ports count as published at the same number",
		c: ctr(func(c *Container) {
			c.HostConfig.NetworkMode = "host"
			c.NetworkSettings = NetworkSettings{Networks: map[string]Network{"host": {}}}
			c.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		}),
		want: []*Service{svc(func(s *Service) { s.Port = 80 })},
	},
	{
		name: "SERVICE_PORT: a port the image does not expose, at the container address",
		c:    ctr(func(c *Container) { c.Config.Labels["SERVICE_PORT"] = "9000" }),
		want: []*Service{svc(func(s *Service) {
			s.ID = "host1:web1:9000"
			s.Address = "172.17.0.2"
			s.Port = 9000
			s.ExposedPort = "9000"
		})},
	},
	{
		name: "multiple ports: -<port> suffix; udp gets :udp and the udp tag",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			published(c, "53/udp", "0.0.0.0", "5353")
		}),
		want: []*Service{
			svc(func(s *Service) {
				s.ID = "host1:web1:53:udp"
				s.Name = "web-53"
				s.Port = 5353
				s.ExposedPort = "53"
				s.PortType = "udp"
				s.Tags = []string{"udp"}
			}),
			svc(func(s *Service) { s.Name = "web-80" }),
		},
	},
	{
		name: "SERVICE_<port>_NAME: no suffix for that port; other port's keys ignored",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			published(c, "443/tcp", "0.0.0.0", "8443")
			c.Config.Labels["SERVICE_80_NAME"] = "http"
			c.Config.Labels["SERVICE_443_TAGS"] = "tls"
		}),
		want: []*Service{
			svc(func(s *Service) {
				s.ID = "host1:web1:443"
				s.Name = "web-443"
				s.Port = 8443
				s.ExposedPort = "443"
				s.Tags = []string{"tls"}
			}),
			svc(func(s *Service) { s.Name = "http" }),
		},
	},
	{
		name: "SERVICE_<port>_NAME beats SERVICE_NAME, whatever the source",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Env = []string{"SERVICE_80_NAME=fromenv"}
			c.Config.Labels["SERVICE_NAME"] = "fromlabel"
		}),
		want: []*Service{svc(func(s *Service) { s.Name = "fromenv" })},
	},
	{
		name: "labels beat env",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Env = []string{"SERVICE_NAME=env", "PATH=/bin", "NOVALUE", "SERVICE_VERSION=1"}
			c.Config.Labels["SERVICE_NAME"] = "label"
		}),
		want: []*Service{svc(func(s *Service) { s.Name = "label"; s.Meta = map[string]string{"version": "1"} })},
	},
	{
		name: "SERVICE_ID replaces the ID; SERVICE_TAGS and -tags combine, escaped comma kept",
		m:    func(m *model) { m.tags, _ = parseTags("prod, dc1") },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_ID"] = "custom-id"
			c.Config.Labels["SERVICE_TAGS"] = `a,b\,c,,`
		}),
		want: []*Service{svc(func(s *Service) { s.ID = "custom-id"; s.Tags = []string{"a", "b,c", "prod", "dc1"} })},
	},
	{
		name: "-tags Go template over the inspect data",
		m: func(m *model) {
			m.tags, _ = parseTags(`{{.Config.Hostname}},{{index .Config.Labels "team"}},{{toUpper "x"}}`)
		},
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["team"] = "blue"
		}),
		want: []*Service{svc(func(s *Service) { s.Tags = []string{"0123456789ab", "blue", "X"} })},
	},
	{
		name: "other SERVICE_ attributes become Meta, lower case",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_REGION"] = "eu"
			c.Config.Labels["SERVICE_80_WEIGHT"] = "5"
			c.Config.Labels["NOT_SERVICE"] = "x"
		}),
		want: []*Service{svc(func(s *Service) { s.Meta = map[string]string{"region": "eu", "weight": "5"} })},
	},
	{
		name: "SERVICE_IGNORE",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_IGNORE"] = "true"
		}),
	},
	{
		name: "SERVICE_<port>_IGNORE skips one port; the other keeps the group suffix",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			published(c, "81/tcp", "0.0.0.0", "8081")
			c.Config.Labels["SERVICE_81_IGNORE"] = "1"
		}),
		want: []*Service{svc(func(s *Service) { s.Name = "web-80" })},
	},
	{
		name: "SERVICE_IGNORE=false does not ignore",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_IGNORE"] = "false"
		}),
		want: []*Service{svc(func(s *Service) { s.Meta = map[string]string{"ignore": "false"} })},
	},
	{
		name: "-explicit: no SERVICE_NAME, no service",
		m:    func(m *model) { m.explicit = true },
		c:    ctr(func(c *Container) { published(c, "80/tcp", "0.0.0.0", "8080") }),
	},
	{
		name: "-explicit with SERVICE_NAME",
		m:    func(m *model) { m.explicit = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Env = []string{"SERVICE_NAME=api"}
		}),
		want: []*Service{svc(func(s *Service) { s.Name = "api" })},
	},
	{
		name: "-useIpFromLabel, prefix length cut",
		m:    func(m *model) { m.useIPFromLabel = "ip" },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["ip"] = "10.5.5.5/24"
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "10.5.5.5" })},
	},
	{
		name: "user-defined network mode: its container address replaces the host address",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.HostConfig.NetworkMode = "backend"
			c.NetworkSettings.IPAddress = ""
			c.NetworkSettings.Networks = map[string]Network{"backend": {IPAddress: "10.20.0.5"}}
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "10.20.0.5" })},
	},
	{
		name: "several networks, -internal: first by name, ingress skipped",
		m:    func(m *model) { m.internal = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "", "")
			c.NetworkSettings.IPAddress = ""
			c.HostConfig.NetworkMode = "default"
			c.NetworkSettings.Networks = map[string]Network{
				"zeta": {IPAddress: "10.30.0.5"}, "alpha": {IPAddress: "10.40.0.5"}, "ingress": {IPAddress: "10.0.0.9"},
			}
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "10.40.0.5"; s.Port = 80 })},
	},
	{
		name: "several networks: SERVICE_NETWORK picks one",
		m:    func(m *model) { m.internal = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "", "")
			c.NetworkSettings.Networks["zeta"] = Network{IPAddress: "10.30.0.5"}
			c.Config.Labels["SERVICE_NETWORK"] = "zeta"
		}),
		want: []*Service{svc(func(s *Service) { s.Address = "10.30.0.5"; s.Port = 80 })},
	},
	{
		name: "IPv6-only network",
		m:    func(m *model) { m.internal = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "", "")
			c.NetworkSettings.IPAddress = ""
			c.NetworkSettings.Networks = map[string]Network{"v6": {GlobalIPv6Address: "fd00::5"}}
			c.Config.Labels["SERVICE_CHECK_TCP"] = "true"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Address = "fd00::5"
			s.Port = 80
			s.Meta = map[string]string{"check_tcp": "true"}
			s.Check = &Check{TCP: "[fd00::5]:80", Interval: "10s"}
		})},
	},
	{
		name: "network mode container:<id>: the other container's address",
		m:    func(m *model) { m.internal = true },
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "", "")
			c.HostConfig.NetworkMode = "container:abcdef"
		}),
		in:   inputs{netContainerIP: "172.17.0.9"},
		want: []*Service{svc(func(s *Service) { s.Address = "172.17.0.9"; s.Port = 80 })},
	},
	{
		name: "Swarm task: the Swarm service's name, the task address, the service's labels under the container's",
		c: ctr(func(c *Container) {
			c.Name = "/web.1.abc"
			c.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
			c.NetworkSettings.Ports = map[string][]PortBinding{"80/tcp": nil}
			c.NetworkSettings.IPAddress = ""
			c.NetworkSettings.Networks = map[string]Network{"ingress": {IPAddress: "10.0.0.7"}, "appnet": {IPAddress: "10.0.1.7"}}
			c.Config.Labels[labelSwarmServiceName] = "web"
			c.Config.Labels["SERVICE_TAGS"] = "task"
		}),
		in: inputs{swarmLabels: map[string]string{"SERVICE_TAGS": "svc", "SERVICE_TIER": "front"}},
		want: []*Service{svc(func(s *Service) {
			s.ID = "host1:web.1.abc:80"
			s.ContainerName = "web.1.abc"
			s.Address = "10.0.1.7"
			s.Port = 80
			s.Tags = []string{"task"}
			s.Meta = map[string]string{"tier": "front"}
		})},
	},
	{
		name: "check HTTP wins over everything, with timeout and method",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			for k, v := range map[string]string{"SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_TTL": "5s",
				"SERVICE_CHECK_TIMEOUT": "2s", "SERVICE_CHECK_HTTP_METHOD": "HEAD", "SERVICE_CHECK_INTERVAL": "3s",
				"SERVICE_CHECK_INITIAL_STATUS": "passing", "SERVICE_CHECK_DEREGISTER_AFTER": "1m"} {
				c.Config.Labels[k] = v
			}
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_http": "/health", "check_tcp": "true", "check_ttl": "5s", "check_timeout": "2s",
				"check_http_method": "HEAD", "check_interval": "3s", "check_initial_status": "passing", "check_deregister_after": "1m"}
			s.Check = &Check{HTTP: "http://10.0.0.1:8080/health", Method: "HEAD", Timeout: "2s", Interval: "3s",
				InitialStatus: "passing", DeregisterCriticalServiceAfter: "1m"}
		})},
	},
	{
		name: "check HTTPS",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_HTTPS"] = "/h"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_https": "/h"}
			s.Check = &Check{HTTP: "https://10.0.0.1:8080/h", Interval: "10s"}
		})},
	},
	{
		name: "check CMD beats SCRIPT",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_CMD"] = "/bin/check"
			c.Config.Labels["SERVICE_CHECK_SCRIPT"] = "x"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_cmd": "/bin/check", "check_script": "x"}
			s.Check = &Check{Args: []string{"check-cmd", "0123456789ab", "80", "/bin/check"}, Interval: "10s"}
		})},
	},
	{
		name: "check SCRIPT with $SERVICE_IP and $SERVICE_PORT",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_SCRIPT"] = "nc -z $SERVICE_IP $SERVICE_PORT"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_script": "nc -z $SERVICE_IP $SERVICE_PORT"}
			s.Check = &Check{Args: []string{"nc -z 10.0.0.1 8080"}, Interval: "10s"}
		})},
	},
	{
		name: "check TTL beats TCP and has no interval",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_TTL"] = "30s"
			c.Config.Labels["SERVICE_CHECK_TCP"] = "true"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_ttl": "30s", "check_tcp": "true"}
			s.Check = &Check{TTL: "30s"}
		})},
	},
	{
		name: "check GRPC with TLS",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_GRPC"] = "true"
			c.Config.Labels["SERVICE_CHECK_GRPC_USE_TLS"] = "true"
			c.Config.Labels["SERVICE_CHECK_TLS_SKIP_VERIFY"] = "true"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_grpc": "true", "check_grpc_use_tls": "true", "check_tls_skip_verify": "true"}
			s.Check = &Check{GRPC: "10.0.0.1:8080", GRPCUseTLS: true, TLSSkipVerify: true, Interval: "10s"}
		})},
	},
	{
		name: "check DOCKER (exec in the container)",
		c: ctr(func(c *Container) {
			published(c, "80/tcp", "0.0.0.0", "8080")
			c.Config.Labels["SERVICE_CHECK_DOCKER"] = "curl -f localhost:$SERVICE_PORT"
		}),
		want: []*Service{svc(func(s *Service) {
			s.Meta = map[string]string{"check_docker": "curl -f localhost:$SERVICE_PORT"}
			s.Check = &Check{Args: []string{"curl", "-f", "localhost:8080"}, DockerID: "0123456789abcdef0123", Shell: "/bin/sh", Interval: "10s"}
		})},
	},
	{
		name:  "-tags template that fails",
		m:     func(m *model) { m.tags, _ = parseTags(`{{.Nope}}`) },
		c:     ctr(func(c *Container) { published(c, "80/tcp", "0.0.0.0", "8080") }),
		error: `-tags template "{{.Nope}}" over container /web1: template: tags:1:2: executing "tags" at <.Nope>: can't evaluate field Nope in type *registrator.Container`,
	},
}

func testModel() *model {
	return &model{hostname: "host1", hostAddr: "10.0.0.1", tags: &tagTemplate{}}
}

func TestBuildServices(t *testing.T) {
	for _, tc := range modelCases {
		t.Run(tc.name, func(t *testing.T) {
			m := testModel()
			if tc.m != nil {
				tc.m(m)
			}
			got, err := m.buildServices(tc.c, tc.in)
			if tc.error != "" {
				if err == nil || err.Error() != tc.error {
					t.Fatalf("buildServices error = %v, want %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatalf("buildServices: %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("buildServices(%s) mismatch (-want +got):\n%s", tc.c.Name, d)
			}
		})
	}
}

func TestDefaultName(t *testing.T) {
	for in, want := range map[string]string{
		"nginx": "nginx", "nginx:1.25": "nginx", "registry:5000/a/b:tag": "b", "registry:5000/b": "b", "b@sha256:00": "b",
	} {
		if got := defaultName(in); got != want {
			t.Errorf("defaultName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzBuildServices feeds arbitrary SERVICE_* labels and env through the
// model, seeded from the table: it must never panic, and every service
// it makes has an ID, a name, and the udp tag exactly when its ID ends
// in :udp (unless SERVICE_ID replaced it).
func FuzzBuildServices(f *testing.F) {
	for _, tc := range modelCases {
		for k, v := range tc.c.Config.Labels {
			f.Add(k, v, "SERVICE_NAME=x", "80/tcp", "8080")
		}
		for _, e := range tc.c.Config.Env {
			f.Add("SERVICE_80_NAME", "y", e, "53/udp", "")
		}
	}
	f.Fuzz(func(t *testing.T, key, value, env, exposed, hostPort string) {
		c := ctr(func(c *Container) {
			c.Config.Labels[key] = value
			c.Config.Env = []string{env}
			published(c, exposed, "0.0.0.0", hostPort)
		})
		m := testModel()
		m.internal = true
		got, err := m.buildServices(c, inputs{})
		if err != nil {
			return // only templates fail
		}
		for _, s := range got {
			if s.ID == "" || s.Name == "" && c.Config.Labels["SERVICE_NAME"] == "" {
				t.Errorf("service without ID or name: %+v", s)
			}
		}
	})
}

func TestPickHostAddr(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"127.0.1.1", "10.0.0.5"}, "10.0.0.5"},
		{[]string{"fd00::5", "10.0.0.5"}, "10.0.0.5"},
		{[]string{"::1", "fd00::5"}, "fd00::5"},
		{[]string{"127.0.1.1"}, "127.0.1.1"},
	} {
		if got := pickHostAddr(tc.in); got != tc.want {
			t.Errorf("pickHostAddr(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
