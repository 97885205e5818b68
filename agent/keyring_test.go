package agent

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/membership"
)

// keyringOf lists the cluster's keyring through a's HTTP API.
func keyringOf(t *testing.T, a *running) *api.KeyringResponse {
	t.Helper()
	rs, err := a.client.Operator().KeyringList(nil)
	if err != nil {
		t.Fatalf("KeyringList on %s: %v", a.Config().NodeName, err)
	}
	if len(rs) != 1 || rs[0].WAN || rs[0].Datacenter != "dc1" {
		t.Fatalf("KeyringList on %s = %+v; want one LAN pool of dc1", a.Config().NodeName, rs)
	}
	return rs[0]
}

func wantKeyring(t *testing.T, a *running, keys, primary map[string]int) {
	t.Helper()
	r := keyringOf(t, a)
	if !maps.Equal(r.Keys, keys) || !maps.Equal(r.PrimaryKeys, primary) || r.NumNodes != 3 || len(r.Messages) != 0 {
		t.Fatalf("keyring on %s = keys %v primary %v nodes %d messages %v; want keys %v primary %v nodes 3",
			a.Config().NodeName, r.Keys, r.PrimaryKeys, r.NumNodes, r.Messages, keys, primary)
	}
}

func allAlive(t *testing.T, a *running, n int) {
	t.Helper()
	eventually(t, "members alive on "+a.Config().NodeName, 15*time.Second, func() (bool, string) {
		ms, err := a.client.Agent().Members(false)
		if err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, m := range ms {
			if m.Status == 1 {
				alive++
			}
		}
		return alive == n, ""
	})
}

// seenGone waits until a no longer sees the agent name alive. An agent
// that comes back on another port may take its name only then: until a
// member has seen it leave, the name belongs to the old address.
func seenGone(t *testing.T, a *running, name string) {
	t.Helper()
	eventually(t, a.Config().NodeName+" sees "+name+" leave", 10*time.Second, func() (bool, string) {
		ms, err := a.client.Agent().Members(false)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.Name == name {
				return m.Status != 1, fmt.Sprint(name, " status ", m.Status) // 1: serf's alive
			}
		}
		return true, ""
	})
}

// TestKeyringRotationAcrossThreeAgents rotates the -encrypt key of three
// agents with the official client as `consul keyring` does, checks that
// an agent holding only the old key can no longer join, and that a
// restarted agent keeps the rotated keyring although its -encrypt still
// names the old key.
func TestKeyringRotationAcrossThreeAgents(t *testing.T) {
	oldKey, _ := membership.GenerateKey()
	newKey, _ := membership.GenerateKey()
	cfg := func(name string, server bool, join ...string) Config {
		c := clusterConfig(t, name, server, map[bool]int{true: 1}[server], join...)
		c.Encrypt = oldKey
		return c
	}
	s0 := startAgent(t, cfg("s0", true))
	waitLeader(t, s0.client)
	c0cfg := cfg("c0", false, s0.SerfAddr())
	c0 := startAgent(t, c0cfg)
	c1 := startAgent(t, cfg("c1", false, s0.SerfAddr()))
	// Every agent answers for the members it knows: c0 and c1 learn of
	// each other through s0, later than s0 learns of both.
	for _, a := range []*running{s0, c0, c1} {
		allAlive(t, a, 3)
	}

	op := s0.client.Operator()
	wantKeyring(t, s0, map[string]int{oldKey: 3}, map[string]int{oldKey: 3})
	if err := op.KeyringInstall(newKey, nil); err != nil {
		t.Fatalf("KeyringInstall: %v", err)
	}
	wantKeyring(t, c1, map[string]int{oldKey: 3, newKey: 3}, map[string]int{oldKey: 3})
	if err := op.KeyringRemove(oldKey, nil); err == nil || !strings.Contains(err.Error(), "Removing the primary key is not allowed") {
		t.Fatalf("KeyringRemove of the primary key = %v; want Consul's refusal", err)
	}
	if err := c1.client.Operator().KeyringUse(newKey, nil); err != nil {
		t.Fatalf("KeyringUse through c1: %v", err)
	}
	wantKeyring(t, s0, map[string]int{oldKey: 3, newKey: 3}, map[string]int{newKey: 3})
	if err := op.KeyringRemove(oldKey, nil); err != nil {
		t.Fatalf("KeyringRemove of the old key: %v", err)
	}
	wantKeyring(t, c0, map[string]int{newKey: 3}, map[string]int{newKey: 3})
	if err := op.KeyringUse("not base64!", nil); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Errorf("KeyringUse of a bad key = %v; want an error saying it is not base64", err)
	}

	// A member that holds only the old key is cut off.
	key, _ := membership.DecodeKey(oldKey)
	stale, err := membership.New(membership.Config{NodeName: "stale", BindAddr: "127.0.0.1", EncryptKey: key, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Shutdown()
	if n, err := stale.Join([]string{s0.SerfAddr()}); err == nil {
		t.Fatalf("an agent with only the removed key joined (%d contacted)", n)
	}

	// A restart keeps the rotated keyring (serf/local.keyring wins over
	// the -encrypt it still has).
	if err := c0.stop(t); err != nil {
		t.Fatalf("stop c0: %v", err)
	}
	seenGone(t, s0, "c0")
	c0 = startAgent(t, c0cfg)
	allAlive(t, s0, 3)
	allAlive(t, c1, 3)
	wantKeyring(t, c0, map[string]int{newKey: 3}, map[string]int{newKey: 3})
}
