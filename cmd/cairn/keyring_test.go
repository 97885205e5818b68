package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent"
	"github.com/cairn-dev/cairn/agent/membership"
)

// encryptedAgent runs an agent with -encrypt key, joined to join, until
// the test ends, and returns it once it serves.
func encryptedAgent(t *testing.T, name, key string, server bool, join ...string) *agent.Agent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeName = name
	cfg.DataDir = t.TempDir()
	cfg.Server = server
	if server {
		cfg.BootstrapExpect = 1
	}
	cfg.BindAddr = "127.0.0.1"
	cfg.Ports = agent.Ports{HTTP: 0, DNS: -1, SerfLAN: 0, Server: 0}
	cfg.Fast = true
	cfg.Encrypt = key
	cfg.Join = join
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent %s did not start: %v", name, err)
	}
	return a
}

// TestKeyringCommand rotates the gossip key of three agents with `cairn
// keyring`, checking consul keyring's output at each step.
func TestKeyringCommand(t *testing.T) {
	oldKey, _ := membership.GenerateKey()
	newKey, _ := membership.GenerateKey()
	s0 := encryptedAgent(t, "s0", oldKey, true)
	encryptedAgent(t, "c0", oldKey, false, s0.SerfAddr())
	encryptedAgent(t, "c1", oldKey, false, s0.SerfAddr())
	addr := s0.HTTPAddr().String()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ms, err := c.Agent().Members(false)
		alive := 0
		for _, m := range ms {
			if m.Status == 1 {
				alive++
			}
		}
		if err == nil && alive == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3 members not seen within 15s: %v, %v", ms, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API: membership is memberlist's
	}
	a := "-http-addr=" + addr
	list := func(keys ...string) string {
		out := "==> Gathering installed encryption keys...\n\ndc1 (LAN):\n"
		for _, k := range keys {
			out += "  " + k + " [3/3]\n"
		}
		return out
	}
	sorted := func(a, b string) []string {
		if a > b {
			return []string{b, a}
		}
		return []string{a, b}
	}
	steps := []struct {
		args    []string
		code    int
		out     string
		errPart string
	}{
		{[]string{"keyring", a, "-list"}, 0, list(oldKey), ""},
		{[]string{"keyring", a, "-install", newKey}, 0, "==> Installing new gossip encryption key...\n", ""},
		{[]string{"keyring", a, "-list"}, 0, list(sorted(oldKey, newKey)...), ""},
		{[]string{"keyring", a, "-remove", oldKey}, 1, "==> Removing gossip encryption key...\n", "error: Unexpected response code: 500 (Removing the primary key is not allowed)"},
		{[]string{"keyring", a, "-use", newKey}, 0, "==> Changing primary gossip encryption key...\n", ""},
		{[]string{"keyring", a, "-list-primary"}, 0, list(newKey), ""},
		{[]string{"keyring", a, "-remove", oldKey}, 0, "==> Removing gossip encryption key...\n", ""},
		{[]string{"keyring", a, "-list"}, 0, list(newKey), ""},
		{[]string{"keyring", a, "-list", "-install", newKey}, 1, "", "Exactly one operation must be given"},
	}
	for _, s := range steps {
		code, out, errOut := runCmd(s.args...)
		if code != s.code || out != s.out || (s.errPart == "") != (errOut == "") || !strings.Contains(errOut, s.errPart) {
			t.Fatalf("cairn %s = %d\n%s\nstderr: %s\nwant %d\n%s\nstderr containing %q", strings.Join(s.args[2:], " "), code, out, errOut, s.code, s.out, s.errPart)
		}
	}
}
