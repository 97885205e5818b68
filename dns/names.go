package dns

import (
	"encoding/hex"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// validLabel reports whether l can be one label of a host name (RFC 1123:
// letters, digits and hyphens, not at either end, 1 to 63 bytes). Names
// that are not are skipped rather than escaped, so every name cairn
// answers can be typed as it is registered.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// addrLabel is Consul's encoding of an address as one label: the address
// bytes in hex (8 digits for IPv4, 32 for IPv6), as in 0a000001.addr.dc1.consul.
func addrLabel(a netip.Addr) string {
	b := a.AsSlice()
	return hex.EncodeToString(b)
}

// parseAddrLabel decodes addrLabel's form.
func parseAddrLabel(l string) (netip.Addr, bool) {
	if len(l) != 8 && len(l) != 32 {
		return netip.Addr{}, false
	}
	var b [16]byte
	n, err := hex.Decode(b[:], []byte(l))
	if err != nil {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(b[:n])
}

// reverseName returns the lower-case in-addr.arpa. or ip6.arpa. name of a.
func reverseName(a netip.Addr) string {
	r, err := mdns.ReverseAddr(a.String())
	if err != nil {
		return ""
	}
	return strings.ToLower(r)
}

// isReverse reports whether name (lower case) is under a reverse zone.
func isReverse(name string) bool {
	return strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa.")
}

// lastLabel splits name (no trailing dot) at its last dot.
func lastLabel(name string) (rest, last string) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}
