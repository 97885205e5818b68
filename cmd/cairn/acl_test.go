package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent"
)

// aclAgent runs an in-process server with ACLs on (default deny, not
// bootstrapped) and returns its HTTP address once it serves.
func aclAgent(t *testing.T) string {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.Ports = agent.Ports{HTTP: 0, DNS: -1, SerfLAN: 0, Server: 0}
	cfg.ACL = agent.ACLConfig{Enabled: true, DefaultPolicy: "deny"}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent did not start: %v", err)
	}
	return a.HTTPAddr().String()
}

// bootstrapACL starts an agent with ACLs on, points CONSUL_HTTP_ADDR at
// it with no token, bootstraps it and returns what bootstrap printed.
func bootstrapACL(t *testing.T) string {
	t.Helper()
	addr := aclAgent(t)
	t.Setenv("CONSUL_HTTP_ADDR", addr)
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	waitLeaderAt(t, addr)
	out, errs, code := cairnACL(t, "", "bootstrap")
	if code != 0 {
		t.Fatalf("bootstrap: %d %s", code, errs)
	}
	return out
}

func cairnACL(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"acl"}, args...), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in:\n%s", name, out)
	}
	return m[1]
}

// TestACLCommands runs the commands a user types after starting an agent
// with ACLs: bootstrap, a policy from a file, a token for it, a role,
// then reads, clones and deletes, checking consul's output lines.
func TestACLCommands(t *testing.T) {
	out := bootstrapACL(t)
	for _, want := range []string{"Description:      Bootstrap Token (Global Management)\n", "Local:            false\n",
		"Policies:\n   00000000-0000-0000-0000-000000000001 - global-management\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("bootstrap output lacks %q:\n%s", want, out)
		}
	}
	mgmt := field(t, out, "SecretID")
	_, errs, code := cairnACL(t, "", "bootstrap")
	if code != 1 || !regexp.MustCompile(`^Failed ACL bootstrapping: Unexpected response code: 403 \(Permission denied: ACL bootstrap no longer allowed \(reset index: \d+\)\)\n$`).MatchString(errs) {
		t.Errorf("second bootstrap: %d %q", code, errs)
	}
	_, errs, code = cairnACL(t, "", "policy", "list")
	if code != 1 || !strings.Contains(errs, "Permission denied: anonymous token lacks permission 'acl:read'") {
		t.Errorf("policy list without a token: %d %q", code, errs)
	}

	t.Setenv("CONSUL_HTTP_TOKEN", mgmt)
	rules := filepath.Join(t.TempDir(), "app.hcl")
	os.WriteFile(rules, []byte("key_prefix \"app/\" {\n  policy = \"write\"\n}\n"), 0o600)
	out, errs, code = cairnACL(t, "", "policy", "create", "-name", "app-kv", "-description", "app keys", "-rules", "@"+rules)
	if code != 0 {
		t.Fatalf("policy create: %s", errs)
	}
	policyID := field(t, out, "ID")
	if !strings.Contains(out, "Name:         app-kv\nDescription:  app keys\nDatacenters:  \nRules:\nkey_prefix \"app/\" {\n  policy = \"write\"\n}\n") {
		t.Errorf("policy create output:\n%s", out)
	}
	_, errs, code = cairnACL(t, "", "policy", "create", "-name", "bad", "-rules", `key "" { policy = "maybe" }`)
	if code != 1 || !strings.HasPrefix(errs, "Failed to create new policy: Unexpected response code: 400 (Invalid Policy: Invalid key policy \"maybe\"") {
		t.Errorf("bad policy: %q", errs)
	}
	out, _, _ = cairnACL(t, "", "policy", "list")
	if !strings.Contains(out, "app-kv:\n   ID:           "+policyID+"\n   Description:  app keys\n") || !strings.Contains(out, "global-management:\n") {
		t.Errorf("policy list:\n%s", out)
	}
	out, errs, code = cairnACL(t, "", "token", "create", "-description", "app", "-policy-name", "app-kv", "-service-identity", "web:dc1")
	if code != 0 {
		t.Fatalf("token create: %s", errs)
	}
	accessor := field(t, out, "AccessorID")
	if !strings.Contains(out, "Policies:\n   "+policyID+" - app-kv\nService Identities:\n   web (Datacenters: dc1)\n") {
		t.Errorf("token create output:\n%s", out)
	}
	out, _, code = cairnACL(t, "", "token", "read", "-accessor-id", accessor, "-format", "json")
	var tok struct{ AccessorID, Description string }
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || tok.AccessorID != accessor || tok.Description != "app" {
		t.Errorf("token read -format=json: %s", out)
	}
	out, errs, code = cairnACL(t, "", "role", "create", "-name", "readers", "-policy-name", "builtin/global-read-only")
	if code != 0 || !strings.Contains(out, "Name:         readers\n") {
		t.Fatalf("role create: %s %s", out, errs)
	}
	out, errs, code = cairnACL(t, "", "token", "update", "-id", accessor, "-role-name", "readers", "-description", "app v2")
	if code != 0 || !strings.Contains(out, "Description:      app v2\n") || !strings.Contains(out, " - readers\n") || !strings.Contains(out, " - app-kv\n") {
		t.Errorf("token update: %s %s", out, errs)
	}
	out, errs, code = cairnACL(t, "", "token", "clone", "-id", accessor, "-description", "copy")
	if code != 0 || !strings.Contains(out, "Description:      copy\n") {
		t.Fatalf("token clone: %s %s", out, errs)
	}
	clone := field(t, out, "AccessorID")
	out, _, _ = cairnACL(t, "", "token", "delete", "-accessor-id", clone)
	if out != "Token \""+clone+"\" deleted successfully\n" {
		t.Errorf("token delete: %q", out)
	}
	out, _, _ = cairnACL(t, "", "token", "list")
	if strings.Contains(out, clone) || !strings.Contains(out, accessor) || !strings.Contains(out, "AccessorID:       00000000-0000-0000-0000-000000000002\n") {
		t.Errorf("token list:\n%s", out)
	}
	out, _, _ = cairnACL(t, "", "policy", "delete", "-name", "app-kv")
	if out != "Policy \""+policyID+"\" deleted successfully\n" {
		t.Errorf("policy delete: %q", out)
	}
	// -token beats CONSUL_HTTP_TOKEN.
	_, errs, code = cairnACL(t, "", "token", "list", "-token", "00000000-0000-0000-0000-0000000000ff")
	if code != 1 || !strings.Contains(errs, "403 (ACL not found)") {
		t.Errorf("-token unknown: %d %q", code, errs)
	}
}

// waitLeaderAt polls the agent's leader, as a client would.
func waitLeaderAt(t *testing.T, addr string) {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		leader, err := c.Status().Leader()
		if err == nil && leader != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 15s: %q, %v", leader, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API: the leader is in Raft's goroutines
	}
}

// TestACLPartialIDs: IDs on the command line may be shortened to a
// unique prefix, as consul's take them; a prefix of several IDs or of
// none is refused, naming what it matched.
func TestACLPartialIDs(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", field(t, bootstrapACL(t), "SecretID"))

	out, errs, code := cairnACL(t, "", "policy", "create", "-name", "app", "-rules", `key_prefix "app/" { policy = "write" }`)
	if code != 0 {
		t.Fatalf("policy create: %s", errs)
	}
	policyID := field(t, out, "ID")
	const (
		tokA = "aaaa1111-0000-4000-8000-000000000001"
		tokB = "aaaa2222-0000-4000-8000-000000000002"
	)
	for _, id := range []string{tokA, tokB} {
		if _, errs, code := cairnACL(t, "", "token", "create", "-accessor", id, "-description", id[:8], "-policy-id", policyID[:8]); code != 0 {
			t.Fatalf("token create %s with -policy-id %s: %s", id, policyID[:8], errs)
		}
	}
	out, errs, code = cairnACL(t, "", "role", "create", "-name", "readers", "-policy-id", "global-management")
	if code != 0 {
		t.Fatalf("role create: %s", errs)
	}
	roleID := field(t, out, "ID")

	for _, tc := range []struct {
		args []string
		want string // in stdout, or in stderr when wantErr
		fail bool
	}{
		{args: []string{"token", "read", "-accessor-id", "aaaa1"}, want: "AccessorID:       " + tokA + "\n"},
		{args: []string{"token", "read", "-id", "aaaa2"}, want: "Policies:\n   " + policyID + " - app\n"},
		{args: []string{"token", "read", "-accessor-id", "anonymous"}, want: "AccessorID:       00000000-0000-0000-0000-000000000002\n"},
		{args: []string{"token", "read", "-accessor-id", "aaaa"}, fail: true,
			want: "Error determining token ID: Partial token ID is not unique: \"aaaa\" is the start of " + tokA + ", " + tokB + "; give more of it\n"},
		{args: []string{"token", "read", "-accessor-id", "ffff"}, fail: true, want: "Error determining token ID: No such token ID with prefix: ffff\n"},
		{args: []string{"token", "update", "-id", "aaaa2", "-role-id", roleID[:8], "-merge-policies"}, want: " - readers\n"},
		{args: []string{"token", "update", "-id", "aaaa2", "-role-id", "ffff"}, fail: true,
			want: "Error resolving role ID ffff: No such role ID with prefix: ffff\n"},
		{args: []string{"token", "clone", "-id", "aaaa1", "-description", "copy"}, want: "Description:      copy\n"},
		{args: []string{"policy", "read", "-id", policyID[:8]}, want: "Name:         app\n"},
		{args: []string{"policy", "read", "-id", "global-management"}, want: "ID:           00000000-0000-0000-0000-000000000001\n"},
		{args: []string{"policy", "read", "-id", "00000000"}, fail: true,
			want: "Error determining policy ID: Partial policy ID is not unique: \"00000000\" is the start of 00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002; give more of it\n"},
		{args: []string{"policy", "update", "-id", policyID[:8], "-description", "app keys"}, want: "Description:  app keys\n"},
		{args: []string{"role", "read", "-id", roleID[:8]}, want: "Name:         readers\n"},
		{args: []string{"role", "update", "-id", roleID[:8], "-description", "read all"}, want: "Description:  read all\n"},
		{args: []string{"token", "delete", "-accessor-id", "aaaa2"}, want: "Token \"" + tokB + "\" deleted successfully\n"},
		{args: []string{"role", "delete", "-id", roleID[:8]}, want: "Role \"" + roleID + "\" deleted successfully\n"},
	} {
		out, errs, code := cairnACL(t, "", tc.args...)
		got := out
		if tc.fail {
			got = errs
		}
		if (code != 0) != tc.fail || !strings.Contains(got, tc.want) {
			t.Errorf("cairn acl %s: exit %d\nstdout: %s\nstderr: %s\nwant exit %v with %q", strings.Join(tc.args, " "), code, out, errs, map[bool]int{false: 0, true: 1}[tc.fail], tc.want)
		}
	}
}
