//go:build unix

package e2e

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// digBin finds dig. Outside CI a machine without it skips the test;
// under CI=true it fails, since CI installs it (.ci/run).
func digBin(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("dig"); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("dig is not installed, and CI=true: install the Debian package dnsutils (apt-get install dnsutils)")
	}
	t.Skip("dig is not installed; apt-get install dnsutils to run the DNS end-to-end tests")
	return ""
}

// dig runs dig against the agent's DNS port and returns its +short
// lines, sorted.
func dig(t *testing.T, bin string, port int, args ...string) ([]string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"@127.0.0.1", "-p", strconv.Itoa(port), "+short", "+time=2", "+tries=1"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, &digError{args: args, out: string(out), err: err}
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines, nil
}

type digError struct {
	args []string
	out  string
	err  error
}

func (e *digError) Error() string {
	return "dig " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.out
}

// TestDNSWithDig runs `cairn agent -dev`, registers a service over HTTP
// and asks the agent's DNS server with dig, as a user would.
func TestDNSWithDig(t *testing.T) {
	bin := digBin(t)
	p := freePorts(t)
	agent := start(t, "agent", append([]string{"agent", "-dev", "-node", "e2e-dns"}, p.flags()...)...)
	c := agent.waitLeader(p.httpAddr())

	for i, ip := range []string{"127.0.0.21", "127.0.0.22"} {
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "web-" + strconv.Itoa(i+1), Name: "web", Address: ip, Port: 8001 + i,
		})
		if err != nil {
			t.Fatalf("register web-%d: %v", i+1, err)
		}
	}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"consul SRV", []string{"web.service.consul", "SRV"},
			[]string{"1 1 8001 7f000015.addr.dc1.consul.", "1 1 8002 7f000016.addr.dc1.consul."}},
		{"swarm tasks", []string{"tasks.web.cluster"}, []string{"127.0.0.21", "127.0.0.22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Another process: poll against a deadline, reporting the
			// last answer.
			deadline := time.Now().Add(10 * time.Second)
			var (
				got []string
				err error
			)
			for time.Now().Before(deadline) {
				if agent.exited() {
					t.Fatalf("the agent exited (%v)", agent.state)
				}
				got, err = dig(t, bin, p.dns, tt.args...)
				if err == nil && slices.Equal(got, tt.want) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("dig %s: not %q within 10s; last answer %q, %v", strings.Join(tt.args, " "), tt.want, got, err)
		})
	}
}
