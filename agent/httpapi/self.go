package httpapi

import (
	"github.com/cairn-dev/cairn/agent/acl"
	"maps"
	"net"
	"net/http"
	"runtime"
	"strconv"
)

// selfResponse is Consul's /v1/agent/self, reduced to what cairn knows.
// Every member is an object: consul/api decodes the answer as
// map[string]map[string]any, and Agent().NodeName() reads
// Config.NodeName.
type selfResponse struct {
	Config      selfConfig
	DebugConfig selfDebugConfig
	Member      agentMember
	Stats       map[string]map[string]string
	Meta        map[string]string
}

type selfConfig struct {
	Datacenter        string
	PrimaryDatacenter string
	NodeName          string
	NodeID            string
	Revision          string
	Server            bool
	Version           string
}

// selfDebugConfig uses the names of Consul's RuntimeConfig.
type selfDebugConfig struct {
	Datacenter  string
	NodeName    string
	NodeID      string
	ServerMode  bool
	BindAddr    string
	HTTPPort    int
	DNSPort     int
	SerfPortLAN int
	ServerPort  int
	Version     string
	Revision    string

	PrimaryDatacenter    string
	AdvertiseAddrLAN     string
	AdvertiseAddrWAN     string
	SerfAdvertiseAddrLAN string // "tcp://ip:port", as Consul writes it
	SerfBindAddrLAN      string
	RPCAdvertiseAddr     string
	ClientAddrs          []string
	HTTPAddrs            []string
	DNSAddrs             []string
	NodeMeta             map[string]string
	Bootstrap            bool
	BootstrapExpect      int
	EnableScriptChecks   bool
}

// agentSelf serves GET /v1/agent/self.
func (h *handler) agentSelf(c *call) error {
	// Consul's AgentSelf: agent read on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Read); err != nil {
		return err
	}
	s := h.self
	// This agent as gossip sees it: alive, since it is answering.
	member := toAgentMember(Member{
		Name:       s.NodeName,
		Addr:       s.BindAddr,
		Port:       s.SerfLANPort,
		Status:     MemberAlive,
		Server:     s.Server,
		Datacenter: s.Datacenter,
		NodeID:     s.NodeID,
		ServerPort: s.ServerPort,
		Build:      s.Version + ":" + s.Revision,
	}, s.Datacenter)
	stats := map[string]map[string]string{
		"build": {"version": s.Version, "revision": s.Revision, "prerelease": ""},
		"runtime": {
			"os":         runtime.GOOS,
			"arch":       runtime.GOARCH,
			"version":    runtime.Version(),
			"goroutines": strconv.Itoa(runtime.NumGoroutine()),
			"max_procs":  strconv.Itoa(runtime.GOMAXPROCS(0)),
			"cpu_count":  strconv.Itoa(runtime.NumCPU()),
		},
	}
	if s.Stats != nil {
		for k, v := range s.Stats() {
			if _, taken := stats[k]; !taken {
				stats[k] = v
			}
		}
	}
	meta := map[string]string{"consul-network-segment": ""}
	maps.Copy(meta, s.NodeMeta)
	return writeJSON(c.w, http.StatusOK, selfResponse{
		Config: selfConfig{
			Datacenter:        s.Datacenter,
			PrimaryDatacenter: s.Datacenter,
			NodeName:          s.NodeName,
			NodeID:            s.NodeID,
			Revision:          s.Revision,
			Server:            s.Server,
			Version:           s.Version,
		},
		DebugConfig: selfDebugConfig{
			Datacenter:  s.Datacenter,
			NodeName:    s.NodeName,
			NodeID:      s.NodeID,
			ServerMode:  s.Server,
			BindAddr:    s.BindAddr,
			HTTPPort:    s.HTTPPort,
			DNSPort:     s.DNSPort,
			SerfPortLAN: s.SerfLANPort,
			ServerPort:  s.ServerPort,
			Version:     s.Version,
			Revision:    s.Revision,

			PrimaryDatacenter:    s.Datacenter,
			AdvertiseAddrLAN:     s.BindAddr,
			AdvertiseAddrWAN:     s.BindAddr,
			SerfAdvertiseAddrLAN: "tcp://" + net.JoinHostPort(s.BindAddr, strconv.Itoa(s.SerfLANPort)),
			SerfBindAddrLAN:      "tcp://" + net.JoinHostPort(s.BindAddr, strconv.Itoa(s.SerfLANPort)),
			RPCAdvertiseAddr:     "tcp://" + net.JoinHostPort(s.BindAddr, strconv.Itoa(s.ServerPort)),
			ClientAddrs:          nonEmpty(s.ClientAddr),
			HTTPAddrs:            listenAddrs(s.ClientAddr, s.HTTPPort),
			DNSAddrs:             listenAddrs(s.ClientAddr, s.DNSPort),
			NodeMeta:             meta,
			Bootstrap:            s.BootstrapExpect == 1,
			BootstrapExpect:      s.BootstrapExpect,
			EnableScriptChecks:   s.EnableScriptChecks,
		},
		Member: member,
		Stats:  stats,
		Meta:   meta,
	})
}

// listenAddrs is a listener as Consul's DebugConfig lists it, none when
// the listener is off.
func listenAddrs(ip string, port int) []string {
	if port <= 0 || ip == "" {
		return []string{}
	}
	return []string{"tcp://" + net.JoinHostPort(ip, strconv.Itoa(port))}
}

func nonEmpty(s string) []string {
	if s == "" {
		return []string{}
	}
	return []string{s}
}
