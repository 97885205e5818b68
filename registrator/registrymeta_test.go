package registrator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRegistryMeta: a published port gets vip_port, the container's own
// port, so that a cairn VIP keeps one port however the instances are
// published; an internal port, a SERVICE_VIP_PORT and the Meta given are
// left alone.
func TestRegistryMeta(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Service
		want map[string]string
	}{
		{"published tcp port", Service{Port: 32768, ExposedPort: "80", PortType: "tcp", Meta: map[string]string{"env": "prod"}},
			map[string]string{"env": "prod", "vip_port": "80"}},
		{"published udp port", Service{Port: 32769, ExposedPort: "53", PortType: "udp"},
			map[string]string{"vip_port": "53/udp"}},
		{"internal (or same) port: nothing to add", Service{Port: 80, ExposedPort: "80", PortType: "tcp"}, nil},
		{"SERVICE_VIP_PORT wins", Service{Port: 32768, ExposedPort: "80", Meta: map[string]string{"vip_port": "8080"}},
			map[string]string{"vip_port": "8080"}},
		{"no container port known", Service{Port: 80}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cmp.Diff(nil, tc.s.Meta)
			if d := cmp.Diff(tc.want, tc.s.RegistryMeta()); d != "" {
				t.Errorf("RegistryMeta() (-want +got):\n%s", d)
			}
			if after := cmp.Diff(nil, tc.s.Meta); after != before {
				t.Errorf("RegistryMeta modified the service's Meta")
			}
		})
	}
}
