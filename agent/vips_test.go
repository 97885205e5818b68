package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/cairn-dev/cairn/agent/vip"
)

// stubDataplane is a kernel data plane that only has a name.
type stubDataplane struct{ name string }

func (d stubDataplane) Name() string                                              { return d.name }
func (d stubDataplane) Sync(context.Context, []vip.Service) error                 { return nil }
func (d stubDataplane) Update(context.Context, []vip.Service, []netip.Addr) error { return nil }
func (d stubDataplane) Flush(context.Context) error                               { return nil }
func (d stubDataplane) Close() error                                              { return nil }

func TestOpenDataplane(t *testing.T) {
	works := func(name string) DataplaneFactory {
		return func(DataplaneOptions) (vip.Dataplane, error) { return stubDataplane{name}, nil }
	}
	fails := func(DataplaneOptions) (vip.Dataplane, error) {
		return nil, errors.New("the kernel has no IPVS (generic netlink family IPVS not found)")
	}
	tests := []struct {
		name  string
		flag  string
		built map[string]DataplaneFactory
		want  string // the data plane's name, "none" for nil
		err   string
	}{
		{"none", "none", map[string]DataplaneFactory{"ipvs": works("ipvs")}, "none", ""},
		{"auto prefers ipvs", "auto", map[string]DataplaneFactory{"ipvs": works("ipvs"), "nftables": works("nftables")}, "ipvs", ""},
		{"auto without ipvs in the kernel", "auto", map[string]DataplaneFactory{"ipvs": fails, "nftables": works("nftables")}, "nftables", ""},
		{"auto with nothing built in", "auto", map[string]DataplaneFactory{}, "none", ""},
		{"unset is auto", "", map[string]DataplaneFactory{"nftables": works("nftables")}, "nftables", ""},
		{"explicit", "nftables", map[string]DataplaneFactory{"ipvs": works("ipvs"), "nftables": works("nftables")}, "nftables", ""},
		{"explicit and unusable", "ipvs", map[string]DataplaneFactory{"ipvs": fails}, "", "-vip-dataplane=ipvs: the kernel has no IPVS (generic netlink family IPVS not found); use -vip-dataplane=auto to fall back to what this host supports"},
		{"not built in", "ipvs", map[string]DataplaneFactory{}, "", "-vip-dataplane=ipvs is not built into this cairn (built in: none); use auto or none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp, err := openDataplane(tt.flag, tt.built, DataplaneOptions{Scheduler: "rr", Logger: slog.New(slog.DiscardHandler)})
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("openDataplane(%q) = %v, want error %q", tt.flag, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("openDataplane(%q) = %v", tt.flag, err)
			}
			got := "none"
			if dp != nil {
				got = dp.Name()
			}
			if got != tt.want {
				t.Errorf("openDataplane(%q) = %s, want %s", tt.flag, got, tt.want)
			}
		})
	}
}
