package agent

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// advertiseIP decides the address other nodes reach this one on. An
// explicit -advertise wins; a specific -bind is used as is; for a
// wildcard bind the host's private IPv4 address is taken when there is
// exactly one, as Consul does.
func advertiseIP(bind, advertise string) (string, error) {
	return pickAdvertise(bind, advertise, hostAddrs)
}

func pickAdvertise(bind, advertise string, addrs func() ([]netip.Addr, error)) (string, error) {
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
	all, err := addrs()
	if err != nil {
		return "", fmt.Errorf("-bind=%s: list this host's addresses to find one to advertise: %w; set -advertise", bind, err)
	}
	var private []string
	for _, a := range all {
		if a.Is4() && isPrivate(a) {
			private = append(private, a.String())
		}
	}
	switch len(private) {
	case 1:
		return private[0], nil
	case 0:
		return "", fmt.Errorf("-bind=%s listens on every address, and this host has no private IPv4 address to advertise; set -advertise (or -bind) to the IP other nodes reach this one on", bind)
	default:
		return "", fmt.Errorf("-bind=%s listens on every address, and this host has several private IPv4 addresses (%s); set -advertise (or -bind) to the one other nodes reach this one on", bind, strings.Join(private, ", "))
	}
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
