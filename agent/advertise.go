package agent

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// advertiseIP decides the address other nodes reach this one on. An
// explicit -advertise wins; a specific -bind is used as is. For a
// wildcard bind it is the address this host sends from on its default
// route (what a user means by "this machine's address", and the one
// that stays right on a host where Docker adds bridge addresses); with
// no default route, the host's one private IPv4 address, as Consul does.
func advertiseIP(bind, advertise string) (string, error) {
	return pickAdvertise(bind, advertise, hostNet{defaultRoute: defaultRouteSource, addrs: hostAddrs})
}

// hostNet is what pickAdvertise reads from the host; tests pass their own.
type hostNet struct {
	// defaultRoute is the source address of the IPv4 default route;
	// false when the host has none.
	defaultRoute func() (netip.Addr, bool)
	// addrs lists the addresses of the interfaces that are up, loopback
	// excluded.
	addrs func() ([]netip.Addr, error)
}

func pickAdvertise(bind, advertise string, host hostNet) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	b, err := netip.ParseAddr(bind)
	if err != nil {
		return "", fmt.Errorf("-bind=%q is not an IP address", bind)
	}
	if !b.IsUnspecified() {
		return bind, nil
	}
	if a, ok := host.defaultRoute(); ok {
		return a.String(), nil
	}
	all, err := host.addrs()
	if err != nil {
		return "", fmt.Errorf("-bind=%s: list this host's addresses to find one to advertise: %w; set -advertise", bind, err)
	}
	var private []string
	v4 := 0
	for _, a := range all {
		if !a.Is4() {
			continue
		}
		v4++
		if isPrivate(a) {
			private = append(private, a.String())
		}
	}
	switch {
	case len(private) == 1:
		return private[0], nil
	case v4 == 0:
		// No network but loopback: only agents on this machine can be
		// reached, and they reach this one on 127.0.0.1.
		return "127.0.0.1", nil
	case len(private) == 0:
		return "", fmt.Errorf("-bind=%s listens on every address, and this host has no default route and no private IPv4 address to advertise; set -advertise (or -bind) to the IP other nodes reach this one on (127.0.0.1 for agents on this machine only)", bind)
	default:
		return "", fmt.Errorf("-bind=%s listens on every address, and this host has no default route and several private IPv4 addresses (%s); set -advertise (or -bind) to the one other nodes reach this one on (127.0.0.1 for agents on this machine only)", bind, strings.Join(private, ", "))
	}
}

// defaultRouteSource asks the kernel which address it would send from
// to an address outside every local network: connecting a UDP socket
// looks the route up and sends nothing.
func defaultRouteSource() (netip.Addr, bool) {
	// 203.0.113.1 (TEST-NET-3) is never local, so only a default route
	// (or a route a user made for it) reaches it.
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 9})
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() {
		return netip.Addr{}, false
	}
	return a, true
}

// cgnat is RFC 6598 shared address space, which Consul counts as private.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isPrivate(a netip.Addr) bool { return a.IsPrivate() || cgnat.Contains(a) }

// hostAddrs lists the addresses of the interfaces that are up.
func hostAddrs() ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr().Unmap())
			}
		}
	}
	return out, nil
}

// portOf is the port of host:port, 0 when there is none.
func portOf(hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
