package ipvs

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/vmtest"
)

// TestProbeWithoutIPVS runs on kernels without IPVS (the development
// machines'): Probe and New must say so clearly instead of returning a
// handle that silently does nothing (the moby/ipvs trap).
func TestProbeWithoutIPVS(t *testing.T) {
	if Probe() == nil {
		t.Skip("this kernel has IPVS; the VM tests (TestSystemIPVS) cover it")
	}
	err := Probe()
	if !errors.Is(err, ErrNoIPVS) {
		t.Fatalf("Probe() = %v, want an error wrapping ErrNoIPVS", err)
	}
	for _, want := range []string{"probe ipvs: the kernel has no IPVS", "modprobe ip_vs", "-vip-dataplane nftables"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Probe() = %q, want it to contain %q", err, want)
		}
	}
	dp, err := New(Config{})
	if dp != nil || !errors.Is(err, ErrNoIPVS) || !strings.HasPrefix(err.Error(), "new ipvs data plane: probe ipvs: the kernel has no IPVS") {
		t.Errorf("New(Config{}) = %v, %v; want nil and the probe's error", dp, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"long interface", Config{Interface: "a-very-long-ifname"}, `interface name "a-very-long-ifname" is not a valid Linux interface name (at most 15 characters`},
		{"slash in interface", Config{Interface: "a/b"}, `interface name "a/b" is not a valid Linux interface name`},
		{"negative drain", Config{DrainTimeout: -time.Second}, "drain timeout -1s and drain poll 1s must not be negative"},
		{"bad scheduler", Config{Scheduler: "round robin"}, `scheduler "round robin" is not an IPVS scheduler name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp, err := New(tt.cfg)
			if dp != nil {
				dp.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) error = %v, want it to contain %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	v4 := netip.MustParseAddr("10.200.0.1")
	be := netip.MustParseAddrPort("10.0.0.2:8080")
	tests := []struct {
		name string
		s    vip.Service
		want string // "" = valid
	}{
		{"ok", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: []netip.AddrPort{be}}}}, ""},
		{"no backends is valid", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.UDP, Port: 53}}}, ""},
		{"ipv6", vip.Service{Name: "web", VIP: netip.MustParseAddr("fd00::1"), Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("[fd01::2]:80")}}}}, ""},
		{"no vip", vip.Service{Name: "web"}, `service "web": VIP "invalid IP" is not a usable address`},
		{"4in6 vip", vip.Service{Name: "web", VIP: netip.MustParseAddr("::ffff:10.0.0.1")}, `VIP "::ffff:10.0.0.1" is not a usable address (IPv4 or IPv6, no zone, IPv4 not in its ::ffff: form)`},
		{"sctp", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: "sctp", Port: 80}}}, `service "web": port 80 has protocol "sctp"; IPVS VIPs carry "tcp" or "udp"`},
		{"port 0", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP}}}, `service "web": VIP 10.200.0.1 has port 0`},
		{"dup port", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP, Port: 80}, {Proto: vip.TCP, Port: 80}}}, `service "web": port tcp 10.200.0.1:80 is given twice`},
		{"mixed family", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("[fd01::2]:80")}}}}, `backend [fd01::2]:80 of tcp 10.200.0.1:80 is not an address:port of the VIP's family`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(tt.s)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("validate(%+v) = %v, want %q", tt.s, err, tt.want)
			}
		})
	}
}

// needVM skips a test outside the VM that TestSystemIPVS boots.
func needVM(t testing.TB) {
	t.Helper()
	if !vmtest.InGuest() {
		t.Skip("runs inside the vmtest VM only (go test -tags system -run TestSystemIPVS boots it)")
	}
	if err := Probe(); err != nil {
		t.Fatalf("in the VM: %v", err)
	}
}
