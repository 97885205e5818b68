//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestSIGHUPReloads: SIGHUP re-reads the config file the agent started
// with. A new log level takes effect at once; a file with an error is
// refused, logged with the reason, and the agent keeps running with the
// old configuration. `cairn reload` does the same over the API.
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	p := freePorts(t)
	cfgFile := filepath.Join(t.TempDir(), "agent.hcl")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`log_level = "info"`)
	proc := start(t, "reload", append([]string{"agent", "-dev", "-config-file", cfgFile}, p.flags()...)...)
	c := proc.waitLeader(p.httpAddr())
	if strings.Contains(proc.errOut.String(), "level=DEBUG") {
		t.Fatal("debug lines at log_level info")
	}

	write(`log_level = "debug"`)
	proc.signal(syscall.SIGHUP)
	waitLog(t, proc, `msg="configuration reloaded" log_level=debug`)
	// Debug lines now reach stderr: each HTTP request logs one.
	if _, _, err := c.KV().Get("x", nil); err != nil {
		t.Fatal(err)
	}
	waitLog(t, proc, `level=DEBUG msg="agent.http: Request finished" method=GET url=/v1/kv/x`)

	write(`log_level = "loud"`)
	proc.signal(syscall.SIGHUP)
	waitLog(t, proc, `msg="reload on SIGHUP failed"`)
	if !strings.Contains(proc.errOut.String(), `loud`) {
		t.Errorf("the refused reload does not name the bad value:\n%s", proc.errOut.String())
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "still", Value: []byte("up")}, nil); err != nil {
		t.Errorf("the agent does not serve after a refused reload: %v", err)
	}

	code, stdout, stderr := cairn(t, nil, "", "reload", "-http-addr", p.httpAddr())
	if code != 1 || !strings.Contains(stderr, "refused") || stdout != "" {
		t.Errorf("cairn reload with a bad file = %d, %q, %q; want 1 and the refusal", code, stdout, stderr)
	}
	write(`log_level = "info"`)
	code, stdout, _ = cairn(t, nil, "", "reload", "-http-addr", p.httpAddr())
	if code != 0 || stdout != "Configuration reload triggered\n" {
		t.Errorf("cairn reload = %d, %q", code, stdout)
	}
}

// waitLog waits for a line in the process's stderr (another process:
// polled against a deadline).
func waitLog(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.errOut.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the agent's log within 15s:\n%s", want, p.errOut.String())
		}
		time.Sleep(20 * time.Millisecond) // the agent is another process
	}
}
