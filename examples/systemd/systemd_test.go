// Package systemd is the systemd example: unit files for server and
// client agents and their configuration files. Its tests verify them.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemdUnits verifies both units with systemd-analyze (the cairn
// binary they start is this tree's, put where the unit names it), and
// checks the hardening the README promises.
func TestSystemdUnits(t *testing.T) {
	analyze := systemtest.NeedCommand(t, "systemd-analyze")
	if testing.Short() {
		t.Skip("builds cairn")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cairn-dev/cairn/cmd/cairn").CombinedOutput(); err != nil {
		t.Fatalf("build cairn: %v\n%s", err, out)
	}
	for _, cfg := range []string{"server.hcl", "client.hcl"} {
		out, err := exec.Command(bin, "validate", cfg).CombinedOutput()
		if err != nil || string(out) != "Configuration is valid!\n" {
			t.Errorf("cairn validate %s = %v, %q", cfg, err, out)
		}
	}
	tests := []struct {
		unit string
		want []string // lines the unit must have
	}{
		{"cairn-server.service", []string{
			"ExecStartPre=/usr/local/bin/cairn validate -quiet /etc/cairn",
			"ExecReload=/bin/kill -HUP $MAINPID",
			"User=cairn", "NoNewPrivileges=yes", "ProtectSystem=strict",
			"ReadWritePaths=/var/lib/cairn", "CapabilityBoundingSet=", "ProtectKernelTunables=yes",
		}},
		{"cairn-client.service", []string{
			"ExecStartPre=/usr/local/bin/cairn validate -quiet /etc/cairn",
			"ExecReload=/bin/kill -HUP $MAINPID",
			"NoNewPrivileges=yes", "ProtectSystem=strict",
			"ReadWritePaths=/var/lib/cairn", "CapabilityBoundingSet=CAP_NET_ADMIN",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			b, err := os.ReadFile(tt.unit)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			for _, w := range tt.want {
				found := false
				for _, l := range lines {
					found = found || l == w
				}
				if !found {
					t.Errorf("%s has no line %q", tt.unit, w)
				}
			}
			// systemd-analyze verify checks that the binaries exist: the
			// unit as written, with this tree's cairn in its place.
			unit := filepath.Join(dir, tt.unit)
			if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/cairn", bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
			if err != nil || strings.Contains(string(out), tt.unit) {
				t.Errorf("systemd-analyze verify %s: %v\n%s", tt.unit, err, out)
			}
		})
	}
}
