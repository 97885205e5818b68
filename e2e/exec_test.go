//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestExecAcrossAgents runs `cairn exec` (Consul's remote exec protocol)
// against three agents: s0 and c0 have disable_remote_exec = false, c1
// keeps the default (true, as in Consul) and must not run anything.
func TestExecAcrossAgents(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	enable := filepath.Join(base, "rexec.hcl")
	if err := os.WriteFile(enable, []byte("disable_remote_exec = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, server bool, extra ...string) *clusterNode {
		p := clusterPorts(t)
		return &clusterNode{t: t, name: name, server: server, expect: 1, ports: p,
			dataDir: filepath.Join(base, name), extra: extra, api: boundedClient(t, p.httpAddr())}
	}
	c := &testCluster{t: t}
	c.servers = []*clusterNode{mk("s0", true, "-config-file", enable)}
	c.clients = []*clusterNode{mk("c0", false, "-config-file", enable), mk("c1", false)}
	join := c.servers[0].ports.serfAddr()
	for _, n := range c.all() {
		n.start(join)
	}
	c.waitReady(c.all()...)
	eventually(t, "three members alive", 30e9, func() (bool, string) {
		ms, err := c.servers[0].members()
		return err == nil && len(ms) == 3, strings.Join(ms, ", ")
	})
	addr := "CONSUL_HTTP_ADDR=" + c.clients[1].ports.httpAddr() // the CLI talks to c1, which itself refuses to run jobs

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // sorted lines
		stderrIn string
	}{
		{"every agent that allows it", []string{"exec", "-wait", "2s", "echo hello; echo world; exit 3"}, 2, []string{
			"    c0: hello", "    c0: world", "    s0: hello", "    s0: world",
			"2 / 2 node(s) completed / acknowledged",
			"==> c0: finished with exit code 3", "==> s0: finished with exit code 3",
		}, ""},
		{"-node filter, -shell=false", []string{"exec", "-wait", "2s", "-node", "^c0$", "-shell=false", "printf", "%s", "args"}, 0, []string{
			"    c0: args",
			"1 / 1 node(s) completed / acknowledged",
			"==> c0: finished with exit code 0",
		}, ""},
		{"only the disabled agent", []string{"exec", "-wait", "2s", "-node", "^c1$", "true"}, 0, []string{
			"0 / 0 node(s) completed / acknowledged",
		}, "disable_remote_exec = false"},
		{"script from stdin", []string{"exec", "-wait", "2s", "-node", "^s0$", "-"}, 0, []string{
			"    s0: from a script",
			"1 / 1 node(s) completed / acknowledged",
			"==> s0: finished with exit code 0",
		}, ""},
		{"tag without service", []string{"exec", "-tag", "x", "true"}, 1, nil, "Cannot provide tag filter without service filter."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdin := ""
			if tc.args[len(tc.args)-1] == "-" {
				stdin = "#!/bin/sh\necho from a script\n"
			}
			code, stdout, stderr := cairn(t, []string{addr}, stdin, tc.args...)
			// Consul's TargetedUI prints a chunk's trailing newline as
			// a bare "    node:" line; how many there are depends on how
			// the output was chunked, so they are left out.
			var lines []string
			for _, l := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
				if l != "" && !(strings.HasPrefix(l, "    ") && strings.HasSuffix(l, ":")) {
					lines = append(lines, l)
				}
			}
			slices.Sort(lines)
			if code != tc.code || !slices.Equal(lines, tc.stdout) || !strings.Contains(stderr, tc.stderrIn) {
				t.Errorf("cairn %s = %d\nstdout (sorted): %q\nstderr: %s\nwant %d, stdout %q, stderr containing %q",
					strings.Join(tc.args, " "), code, lines, stderr, tc.code, tc.stdout, tc.stderrIn)
			}
		})
	}
	// The other daily commands against the same agents, output as
	// consul prints it.
	s0 := "CONSUL_HTTP_ADDR=" + c.servers[0].ports.httpAddr()
	if err := c.servers[0].api.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	cli := []struct {
		args []string
		code int
		out  string // a regular expression for the whole stdout
	}{
		{[]string{"event", "-name", "deploy", "-service", "web", "v1"}, 0, `^Event ID: [0-9a-f-]{36}\n$`},
		{[]string{"event", "-tag", "x", "-name", "deploy"}, 1, `^$`},
		{[]string{"maint", "-enable", "-reason", "upgrade"}, 0, `^Node maintenance is now enabled\n$`},
		{[]string{"maint", "-enable", "-service", "web-1"}, 0, `^Service maintenance is now enabled for "web-1"\n$`},
		{[]string{"maint"}, 0, `^Node:\n  Name:   s0\n  Reason: upgrade\n\nService:\n  ID:     web-1\n  Reason: Maintenance mode is enabled for this service, but no reason was provided. This is a default message.\n\n$`},
		{[]string{"maint", "-disable"}, 0, `^Node maintenance is now disabled\n$`},
		{[]string{"maint", "-disable", "-service", "web-1"}, 0, `^Service maintenance is now disabled for "web-1"\n$`},
		{[]string{"maint"}, 0, `^$`},
		{[]string{"rtt", "nosuch"}, 1, `^$`},
	}
	for _, tc := range cli {
		code, stdout, stderr := cairn(t, []string{s0}, "", tc.args...)
		if code != tc.code || !regexp.MustCompile(tc.out).MatchString(stdout) {
			t.Errorf("cairn %s = %d, stdout %q, stderr %q; want %d, stdout matching %s", strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.out)
		}
	}
	eventually(t, "cairn rtt c0 (to s0)", 20e9, func() (bool, string) {
		code, stdout, stderr := cairn(t, []string{s0}, "", "rtt", "c0")
		return code == 0 && regexp.MustCompile(`^Estimated c0 <-> s0 rtt: [0-9]+\.[0-9]{3} ms \(using LAN coordinates\)\n$`).MatchString(stdout), stdout + stderr
	})

	// Nothing is left in the KV store.
	keys, _, err := c.servers[0].api.KV().Keys("_rexec/", "", nil)
	if err != nil || len(keys) != 0 {
		t.Errorf("_rexec/ after the runs = %v, %v; want empty", keys, err)
	}
}
