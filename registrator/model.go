package registrator

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Swarm labels the engine puts on every task container.
const (
	labelSwarmServiceName = "com.docker.swarm.service.name"
	labelSwarmServiceID   = "com.docker.swarm.service.id"
)

// DefaultCheckInterval is the interval of HTTP/TCP/script/gRPC checks
// without SERVICE_CHECK_INTERVAL (registrator's consul.DefaultInterval).
const DefaultCheckInterval = "10s"

// model is everything buildServices needs besides the container.
type model struct {
	hostname       string       // ID prefix (Config.Hostname)
	hostAddr       string       // what 0.0.0.0 resolves to: the hostname's address; "" if unknown
	hostIP         string       // -ip
	internal       bool         // -internal
	explicit       bool         // -explicit
	useIPFromLabel string       // -useIpFromLabel
	tags           *tagTemplate // -tags
}

// inputs are the per-container facts that need more than the container's
// own inspect data; the sync loop looks them up.
type inputs struct {
	swarmLabels    map[string]string // the Swarm service spec's labels, for tasks
	netContainerIP string            // the address of the container named by NetworkMode container:<id>
}

// port is one candidate port (upstream's ServicePort).
type port struct {
	hostPort    string
	hostIP      string
	exposedPort string
	exposedIP   string
	portType    string // tcp or udp
	declared    bool   // from SERVICE_PORT, not from the image or the engine
}

// meta holds a container's SERVICE_* settings: upstream's rule is that a
// port-specific SERVICE_<port>_KEY beats SERVICE_KEY; among the same
// key, a container label beats a Swarm service label beats an env var.
type meta map[string]string

// collectMeta merges the SERVICE_* keys of env, Swarm service labels and
// container labels (later sources win), keys without the SERVICE_ prefix.
func collectMeta(c *Container, swarmLabels map[string]string) meta {
	m := meta{}
	for _, kv := range c.Config.Env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			m.put(k, v)
		}
	}
	for _, labels := range []map[string]string{swarmLabels, c.Config.Labels} {
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			m.put(k, labels[k])
		}
	}
	return m
}

func (m meta) put(k, v string) {
	if rest, ok := strings.CutPrefix(k, "SERVICE_"); ok && rest != "" {
		m[strings.ToLower(rest)] = v
	}
}

// forPort returns the attributes for one exposed port: generic keys,
// overwritten by SERVICE_<port>_ keys for this port; keys of other ports
// are dropped. fromPort says which keys came from the port form.
func (m meta) forPort(p string) (attrs map[string]string, fromPort map[string]bool) {
	attrs = map[string]string{}
	fromPort = map[string]bool{}
	for k, v := range m {
		head, rest, ok := strings.Cut(k, "_")
		if _, err := strconv.Atoi(head); err == nil && ok {
			if head == p {
				attrs[rest] = v
				fromPort[rest] = true
			}
			continue
		}
		if !fromPort[k] {
			attrs[k] = v
		}
	}
	return attrs, fromPort
}

// containerNetwork is the network whose address the container is
// registered with. The rule, first match wins:
//  1. SERVICE_NETWORK names one of the container's networks;
//  2. HostConfig.NetworkMode is a user-defined network the container is on;
//  3. the default bridge address (NetworkSettings.IPAddress);
//  4. the container's networks sorted by name, skipping Swarm's "ingress",
//     the first with an address.
//
// The address is the network's IPv4 address, else its global IPv6 one.
func containerNetwork(c *Container, attrs map[string]string) (name, addr string) {
	nets := c.NetworkSettings.Networks
	pick := func(n string) (string, bool) {
		nw, ok := nets[n]
		if !ok {
			return "", false
		}
		if nw.IPAddress != "" {
			return nw.IPAddress, true
		}
		return nw.GlobalIPv6Address, nw.GlobalIPv6Address != ""
	}
	if n := attrs["network"]; n != "" {
		if a, ok := pick(n); ok {
			return n, a
		}
	}
	if n := c.HostConfig.NetworkMode; userNetwork(n) {
		if a, ok := pick(n); ok {
			return n, a
		}
	}
	if a := c.NetworkSettings.IPAddress; a != "" {
		return "bridge", a
	}
	if a := c.NetworkSettings.GlobalIPv6Address; a != "" {
		return "bridge", a
	}
	for _, n := range slices.Sorted(maps.Keys(nets)) {
		if n == "ingress" {
			continue
		}
		if a, ok := pick(n); ok {
			return n, a
		}
	}
	return "", ""
}

// userNetwork reports whether a NetworkMode names a user-defined network.
func userNetwork(mode string) bool {
	switch mode {
	case "", "bridge", "default", "host", "none":
		return false
	}
	return !strings.HasPrefix(mode, "container:")
}

// defaultName is the service name from the image: the last path element
// without tag or digest ("registry:5000/team/web:1.2" -> "web").
func defaultName(image string) string {
	b := path.Base(image)
	b, _, _ = strings.Cut(b, "@")
	b, _, _ = strings.Cut(b, ":")
	return b
}

// boolAttr reads a per-container boolean override; ok is false when the
// attribute is absent or not a boolean.
func boolAttr(attrs map[string]string, k string) (v, ok bool) {
	s, present := attrs[k]
	if !present {
		return false, false
	}
	b, err := strconv.ParseBool(s)
	return b, err == nil
}

// buildServices is registrator's service model: the services container c
// should have, rule for rule as gliderlabs/registrator's bridge.add and
// newService build them, plus cairn's additions (see the package README).
// It returns nil for a container that should have none. Only the -tags
// template can fail.
func (m *model) buildServices(c *Container, in inputs) ([]*Service, error) {
	all := collectMeta(c, in.swarmLabels)
	swarmName := c.Config.Labels[labelSwarmServiceName]

	ports := map[string]port{}
	// Exposed ports first, "published" on the host at the same number:
	// right for --net=host, overwritten below for bridged containers.
	for p := range c.Config.ExposedPorts {
		ports[p] = m.port(c, all, p, []PortBinding{{HostIP: "0.0.0.0", HostPort: portNumber(p)}})
	}
	for p, pub := range c.NetworkSettings.Ports {
		ports[p] = m.port(c, all, p, pub)
	}
	// SERVICE_PORT=8080[/udp] declares a port the image does not expose.
	if sp := all["port"]; sp != "" {
		key := sp
		if !strings.Contains(key, "/") {
			key += "/tcp"
		}
		if _, err := strconv.Atoi(portNumber(key)); err == nil {
			if _, ok := ports[key]; !ok {
				p := m.port(c, all, key, nil)
				p.declared = true
				ports[key] = p
			}
		}
	}

	keys := slices.Sorted(maps.Keys(ports))
	var chosen []port
	for _, k := range keys {
		p := ports[k]
		if p.hostPort == "" && !m.internalFor(c, all, p) {
			continue // not published on the host
		}
		chosen = append(chosen, p)
	}
	isGroup := len(chosen) > 1
	var out []*Service
	for _, p := range chosen {
		s, err := m.newService(c, in, all, p, isGroup, swarmName)
		if err != nil {
			return nil, err
		}
		if s != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// internalFor says whether port p is registered with the container's
// address and port: -internal, overridden per container by
// SERVICE_INTERNAL; always for Swarm tasks and for SERVICE_PORT ports
// that are not published.
func (m *model) internalFor(c *Container, all meta, p port) bool {
	attrs, _ := all.forPort(p.exposedPort)
	if v, ok := boolAttr(attrs, "internal"); ok {
		return v
	}
	if c.Config.Labels[labelSwarmServiceName] != "" {
		return true
	}
	if p.declared && p.hostPort == "" {
		return true
	}
	return m.internal
}

func portNumber(p string) string {
	n, _, _ := strings.Cut(p, "/")
	return n
}

// port is upstream's servicePort.
func (m *model) port(c *Container, all meta, key string, published []PortBinding) port {
	var p port
	if len(published) > 0 {
		p.hostPort = published[0].HostPort
		p.hostIP = published[0].HostIP
	}
	if p.hostIP == "" {
		p.hostIP = "0.0.0.0"
	}
	num, proto, ok := strings.Cut(key, "/")
	p.exposedPort = num
	p.portType = "tcp"
	if ok && proto != "" {
		p.portType = proto
	}
	attrs, _ := all.forPort(num)
	net, addr := containerNetwork(c, attrs)
	p.exposedIP = addr
	// Upstream: on a user-defined network (overlay), the "host" address
	// is the container's address on it.
	if userNetwork(c.HostConfig.NetworkMode) || (attrs["network"] != "" && net == attrs["network"]) {
		p.hostIP = addr
	}
	return p
}

func (m *model) newService(c *Container, in inputs, all meta, p port, isGroup bool, swarmName string) (*Service, error) {
	attrs, fromPort := all.forPort(p.exposedPort)

	hostIP := p.hostIP
	if (hostIP == "0.0.0.0" || hostIP == "::") && m.hostAddr != "" {
		hostIP = m.hostAddr
	}
	if m.hostIP != "" {
		hostIP = m.hostIP
	}
	if ip := attrs["ip"]; ip != "" {
		hostIP = ip // per-container -ip
	}

	if ig := attrs["ignore"]; ig != "" {
		// Upstream ignores on any value; cairn lets SERVICE_IGNORE=false
		// undo a SERVICE_IGNORE inherited from a Swarm service or image.
		if v, err := strconv.ParseBool(ig); err != nil || v {
			return nil, nil
		}
	}
	name := attrs["name"]
	if name == "" {
		if m.explicit {
			return nil, nil
		}
		name = defaultName(c.Config.Image)
		if swarmName != "" {
			name = swarmName
		}
	}
	cname := strings.TrimPrefix(c.Name, "/")
	s := &Service{
		ID:            m.hostname + ":" + cname + ":" + p.exposedPort,
		Name:          name,
		ContainerID:   c.ID,
		ContainerName: cname,
		ExposedPort:   p.exposedPort,
		PortType:      p.portType,
	}
	if isGroup && !fromPort["name"] {
		s.Name += "-" + p.exposedPort
	}
	if m.internalFor(c, all, p) {
		s.Address = p.exposedIP
		s.Port, _ = strconv.Atoi(p.exposedPort)
	} else {
		s.Address = hostIP
		s.Port, _ = strconv.Atoi(p.hostPort)
	}
	if m.useIPFromLabel != "" {
		if v := c.Config.Labels[m.useIPFromLabel]; v != "" {
			if i := strings.LastIndex(v, "/"); i >= 0 {
				v = v[:i]
			}
			s.Address = v
		}
	}
	if strings.HasPrefix(c.HostConfig.NetworkMode, "container:") && in.netContainerIP != "" {
		s.Address = in.netContainerIP
	}
	if a, err := netip.ParseAddr(s.Address); err == nil && a.Is4In6() {
		s.Address = a.Unmap().String()
	}

	force, err := m.tags.render(c)
	if err != nil {
		return nil, err
	}
	svcTags := attrs["tags"]
	if strings.Contains(svcTags, "{{") {
		t, err := parseTags(svcTags)
		if err != nil {
			return nil, fmt.Errorf("container %s: SERVICE_TAGS: %w", cname, err)
		}
		if svcTags, err = t.render(c); err != nil {
			return nil, fmt.Errorf("container %s: SERVICE_TAGS: %w", cname, err)
		}
	}
	s.Tags = append(splitTags(svcTags), splitTags(force)...)
	if p.portType == "udp" {
		s.Tags = append(s.Tags, "udp")
		s.ID += ":udp"
	}
	if id := attrs["id"]; id != "" {
		s.ID = id
	}
	for _, k := range []string{"id", "tags", "name", "port", "internal", "ip", "network"} {
		delete(attrs, k)
	}
	if len(attrs) > 0 {
		s.Meta = attrs
	}
	s.Check = buildCheck(s, attrs)
	return s, nil
}

// buildCheck is the consul backend's check from SERVICE_CHECK_*, with
// registrator's precedence: HTTP, HTTPS, CMD, SCRIPT, TTL, TCP, GRPC,
// then cairn's DOCKER. Only the first present kind counts.
func buildCheck(s *Service, a map[string]string) *Check {
	ch := &Check{InitialStatus: a["check_initial_status"]}
	hostPort := fmt.Sprintf("%s:%d", bracket(s.Address), s.Port)
	switch {
	case a["check_http"] != "":
		ch.HTTP = "http://" + hostPort + a["check_http"]
		ch.Timeout = a["check_timeout"]
		ch.Method = a["check_http_method"]
	case a["check_https"] != "":
		ch.HTTP = "https://" + hostPort + a["check_https"]
		ch.Timeout = a["check_timeout"]
		ch.Method = a["check_https_method"]
	case a["check_cmd"] != "":
		short := s.ContainerID
		if len(short) > 12 {
			short = short[:12]
		}
		ch.Args = []string{"check-cmd", short, s.ExposedPort, a["check_cmd"]}
	case a["check_script"] != "":
		ch.Args = []string{interpolate(a["check_script"], s)}
	case a["check_ttl"] != "":
		ch.TTL = a["check_ttl"]
	case a["check_tcp"] != "":
		ch.TCP = hostPort
		ch.Timeout = a["check_timeout"]
	case a["check_grpc"] != "":
		ch.GRPC = hostPort
		ch.Timeout = a["check_timeout"]
		if a["check_grpc_use_tls"] != "" {
			ch.GRPCUseTLS = true
			ch.TLSSkipVerify = a["check_tls_skip_verify"] != ""
		}
	case a["check_docker"] != "":
		ch.Args = strings.Fields(interpolate(a["check_docker"], s))
		ch.DockerID = s.ContainerID
		ch.Shell = a["check_shell"]
		if ch.Shell == "" {
			ch.Shell = "/bin/sh"
		}
	default:
		return nil
	}
	if len(ch.Args) > 0 || ch.HTTP != "" || ch.TCP != "" || ch.GRPC != "" {
		ch.Interval = a["check_interval"]
		if ch.Interval == "" {
			ch.Interval = DefaultCheckInterval
		}
	}
	ch.DeregisterCriticalServiceAfter = a["check_deregister_after"]
	return ch
}

// interpolate replaces $SERVICE_IP and $SERVICE_PORT as registrator does.
func interpolate(script string, s *Service) string {
	script = strings.ReplaceAll(script, "$SERVICE_IP", s.Address)
	return strings.ReplaceAll(script, "$SERVICE_PORT", strconv.Itoa(s.Port))
}

// bracket puts an IPv6 address in brackets for host:port.
func bracket(addr string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]"
	}
	return addr
}
