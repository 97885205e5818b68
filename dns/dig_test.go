package dns

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// needDig returns dig's path, or skips the test naming what is missing;
// under CI=true it fails instead (.ci/run installs dnsutils).
func needDig(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dig is not installed (CI=true): .ci/run must install dnsutils")
		}
		t.Skip("dig is not installed; apt-get install dnsutils to run this test")
	}
	return path
}

// TestDig asks the server with dig, as users and end-to-end scripts do.
func TestDig(t *testing.T) {
	dig := needDig(t)
	up := startUpstream(t, exampleOrg)
	s := newTestServer(t, newFakeCatalog(testServices()), func(c *Config) { c.Recursors = []string{up.addr} })
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []string {
		t.Helper()
		args = append([]string{"@" + host, "-p", port, "+time=5", "+tries=1"}, args...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		var lines []string
		for l := range strings.Lines(string(out)) {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	sorted := func(lines []string) string {
		slices.Sort(lines)
		return strings.Join(lines, " ")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"+short", "web.cluster"}, "10.10.0.5"},
		{[]string{"+short", "tasks.web.cluster"}, "10.0.0.1 10.0.0.2 172.17.0.4"},
		{[]string{"+short", "SRV", "_web._v1.service.consul"}, "1 1 8080 n1.node.dc1.consul. 1 1 8081 ac110004.addr.dc1.consul."},
		{[]string{"+short", "n6.node.dc1.cluster", "AAAA"}, "fd00::6"},
		{[]string{"+short", "-x", "10.0.0.1"}, "n1.node.dc1.cluster."},
		{[]string{"+short", "example.org"}, "192.0.2.1"},
	} {
		if got := sorted(run(tt.args...)); got != tt.want {
			t.Errorf("dig %s = %q, want %q", strings.Join(tt.args, " "), got, tt.want)
		}
	}

	// Without EDNS, 40 records do not fit in 512 bytes: dig sees TC and
	// asks again over TCP, which returns them all.
	if got := run("+short", "+noedns", "tasks.big.cluster"); len(got) != 40 {
		t.Errorf("dig +noedns tasks.big.cluster: %d records, want all 40 (over TCP after TC): %q", len(got), got)
	}
	out := strings.Join(run("+noedns", "+ignore", "tasks.big.cluster"), "\n")
	if !strings.Contains(out, "flags: qr aa tc rd ra;") || !strings.Contains(out, "MSG SIZE  rcvd: 4") {
		t.Errorf("dig +noedns +ignore tasks.big.cluster: want TC set and a reply of 4xx bytes:\n%s", out)
	}
	out = strings.Join(run("nope.cluster"), "\n")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "IN\tSOA\tns.cluster. hostmaster.cluster.") {
		t.Errorf("dig nope.cluster: want NXDOMAIN with the SOA:\n%s", out)
	}
}
