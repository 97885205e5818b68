package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// A session ends when a check it depends on turns critical or is
// deregistered: the agent's own checks and checks registered through
// /v1/catalog/register alike. Until then it lives.
func TestSessionsEndWithTheirChecks(t *testing.T) {
	r := start(t, devConfig())
	c := r.client
	if err := c.Agent().CheckRegister(&api.AgentCheckRegistration{ID: "app", Name: "app",
		AgentServiceCheck: api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	reg := &api.CatalogRegistration{Node: "ext", Address: "10.9.9.9",
		Check: &api.AgentCheck{Node: "ext", CheckID: "ext:alive", Name: "alive", Status: api.HealthPassing}}
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	own, _, err := c.Session().Create(&api.SessionEntry{NodeChecks: []string{"serfHealth", "app"}}, nil)
	if err != nil {
		t.Fatalf("session on the agent's own check: %v", err)
	}
	ext, _, err := c.Session().Create(&api.SessionEntry{Node: "ext", NodeChecks: []string{"ext:alive"}}, nil)
	if err != nil {
		t.Fatalf("session on a catalog-registered check: %v", err)
	}
	for _, tc := range []struct {
		checks []string
		want   string
	}{
		{[]string{"nope"}, "Missing check 'nope' registration"},
	} {
		_, _, err := c.Session().Create(&api.SessionEntry{NodeChecks: tc.checks}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create with checks %v = %v, want %q", tc.checks, err, tc.want)
		}
	}
	alive := func(id string) bool {
		s, _, err := c.Session().Info(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s != nil
	}
	if !alive(own) || !alive(ext) {
		t.Fatal("sessions ended while their checks pass")
	}

	if err := c.Agent().FailTTL("app", "down"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session on app ends", 10*time.Second, func() (bool, string) {
		return !alive(own), fmt.Sprint("alive: ", alive(own))
	})
	if !alive(ext) {
		t.Error("the session on ext ended with app's")
	}
	if _, _, err := c.Session().Create(&api.SessionEntry{NodeChecks: []string{"app"}}, nil); err == nil || !strings.Contains(err.Error(), "Check 'app' is in critical state") {
		t.Errorf("create on a critical check = %v, want Consul's refusal", err)
	}
	if _, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "ext", CheckID: "ext:alive"}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session on ext:alive ends", 10*time.Second, func() (bool, string) {
		return !alive(ext), fmt.Sprint("alive: ", alive(ext))
	})
}
