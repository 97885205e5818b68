package acl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/acl"
)

func compileFile(t *testing.T, def acl.Default, files ...string) acl.Authorizer {
	t.Helper()
	var rules []acl.Rule
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := acl.ParseRules(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rules = append(rules, rs...)
	}
	return acl.Compile(rules, def, "test")
}

type check struct {
	res   acl.Resource
	name  string
	want  acl.Access
	under bool // AllowedUnder instead of Allowed
	ok    bool
}

var kvTeamChecks = []check{
	{acl.Key, "anything", acl.Read, false, true},
	{acl.Key, "anything", acl.Write, false, false},
	{acl.Key, "team/app/config", acl.Write, false, true},
	{acl.Key, "team/secrets/db", acl.Read, false, false},    // longest prefix: deny
	{acl.Key, "team/secrets/public", acl.Read, false, true}, // exact beats prefix
	{acl.Key, "team/secrets/public", acl.Write, false, false},
	{acl.Key, "logs/x", acl.List, false, true},
	{acl.Key, "logs/x", acl.Read, false, true}, // list grants read
	{acl.Key, "logs/x", acl.Write, false, false},
	{acl.Key, "other/x", acl.List, false, false}, // read does not grant list
	{acl.Key, "team/app/", acl.Write, true, true},
	{acl.Key, "team/", acl.Write, true, false}, // team/secrets/ below denies
	{acl.Key, "", acl.Read, true, false},       // deny below
	{acl.Key, "logs/", acl.Read, true, true},
	{acl.Service, "web", acl.Read, false, false}, // no service rule: default deny
}

func TestAuthorizerGolden(t *testing.T) {
	for _, file := range []string{"kv-team.hcl", "kv-team.json"} {
		a := compileFile(t, acl.DefaultDeny, file)
		for _, c := range kvTeamChecks {
			got := a.Allowed(c.res, c.name, c.want)
			if c.under {
				got = a.AllowedUnder(c.res, c.name, c.want)
			}
			if got != c.ok {
				t.Errorf("%s: %s %q %s (under=%v) = %v, want %v", file, c.res, c.name, c.want, c.under, got, c.ok)
			}
		}
	}
	checks := []check{
		{acl.Service, "db", acl.Read, false, true},
		{acl.Service, "db", acl.Write, false, false},
		{acl.Service, "web", acl.Write, false, true},
		{acl.Service, "web-api", acl.Write, false, true},
		{acl.Service, "web-admin-ui", acl.Read, false, false},
		{acl.Node, "db-1", acl.Write, false, true},
		{acl.Node, "db-2", acl.Write, false, false},
		{acl.Session, "db-2", acl.Write, false, true},
		{acl.Agent, "node-1", acl.Write, false, true},
		{acl.Agent, "node-2", acl.Write, false, false},
		{acl.Event, "deploy-web", acl.Write, false, true},
		{acl.Event, "restart", acl.Read, false, false},
		{acl.Query, "q", acl.Read, false, true},
		{acl.Operator, "", acl.Read, false, true},
		{acl.Operator, "", acl.Write, false, false},
		{acl.Keyring, "", acl.Write, false, true},
		{acl.ACL, "", acl.Read, false, false},
		{acl.Key, "k", acl.Read, false, false},
	}
	a := compileFile(t, acl.DefaultDeny, "services.hcl")
	for _, c := range checks {
		if got := a.Allowed(c.res, c.name, c.want); got != c.ok {
			t.Errorf("services.hcl: %s %q %s = %v, want %v", c.res, c.name, c.want, got, c.ok)
		}
	}
}

// TestAuthorizerDefaultAllow: without a rule, default_policy allow
// grants, except on the ACL system itself (Consul's allowManage).
func TestAuthorizerDefaultAllow(t *testing.T) {
	a := compileFile(t, acl.DefaultAllow, "kv-team.hcl")
	for _, c := range []check{
		{acl.Service, "web", acl.Write, false, true},
		{acl.Operator, "", acl.Write, false, true},
		{acl.ACL, "", acl.Read, false, false},
		{acl.Key, "team/secrets/x", acl.Read, false, false}, // a rule still denies
		{acl.Key, "x", acl.Write, false, false},             // and read still caps
	} {
		if got := a.Allowed(c.res, c.name, c.want); got != c.ok {
			t.Errorf("%s %q %s = %v, want %v", c.res, c.name, c.want, got, c.ok)
		}
	}
}

// TestMergePrecedence: across policies deny beats write beats read for
// the same name, as Consul merges a token's policies.
func TestMergePrecedence(t *testing.T) {
	parse := func(src string) []acl.Rule {
		rs, err := acl.ParseRules(src)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	read := parse(`key_prefix "a/" { policy = "read" }`)
	write := parse(`key_prefix "a/" { policy = "write" }`)
	deny := parse(`key_prefix "a/" { policy = "deny" }`)
	if a := acl.Compile(append(read, write...), acl.DefaultDeny, ""); !a.Allowed(acl.Key, "a/x", acl.Write) {
		t.Error("read + write: write denied, want granted")
	}
	if a := acl.Compile(append(write, deny...), acl.DefaultDeny, ""); a.Allowed(acl.Key, "a/x", acl.Read) {
		t.Error("write + deny: read granted, want denied")
	}
}

func TestParseRulesErrors(t *testing.T) {
	for file, want := range map[string]string{
		"bad-list.hcl":   `Invalid service policy "list" for "web"`,
		"bad-policy.hcl": `Invalid key_prefix policy "rw"`,
		"bad-syntax.hcl": "Failed to parse ACL rules",
	} {
		b, _ := os.ReadFile(filepath.Join("testdata", file))
		_, err := acl.ParseRules(string(b))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one containing %q", file, err, want)
		}
	}
}

func TestDeniedText(t *testing.T) {
	a := acl.Compile(nil, acl.DefaultDeny, acl.AnonymousAccessorID)
	got := acl.Denied(a, acl.ACL, "", acl.Read).Error()
	want := "Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token."
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = acl.Denied(acl.Compile(nil, acl.DefaultDeny, "abc"), acl.Key, "k", acl.Write).Error()
	if want := `Permission denied: token with AccessorID 'abc' lacks permission 'key:write' on "k"`; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestFingerprint: two Authorizers have the same fingerprint exactly when
// they grant the same, whatever the order of their rules or the token
// that holds them (DNS builds its answers once per fingerprint).
func TestFingerprint(t *testing.T) {
	web := acl.Rule{Resource: acl.Service, Name: "web", Access: acl.Read}
	all := acl.Rule{Resource: acl.Node, Prefix: true, Access: acl.Read}
	fp := func(a acl.Authorizer) string { return a.(interface{ Fingerprint() string }).Fingerprint() }
	base := fp(acl.Compile([]acl.Rule{web, all}, acl.DefaultDeny, "a"))
	for _, tc := range []struct {
		name  string
		authz acl.Authorizer
		same  bool
	}{
		{"same rules, other order, other token", acl.Compile([]acl.Rule{all, web}, acl.DefaultDeny, "b"), true},
		{"a rule twice", acl.Compile([]acl.Rule{web, all, web}, acl.DefaultDeny, "a"), true},
		{"write instead of read", acl.Compile([]acl.Rule{{Resource: acl.Service, Name: "web", Access: acl.Write}, all}, acl.DefaultDeny, "a"), false},
		{"the name as a prefix", acl.Compile([]acl.Rule{{Resource: acl.Service, Name: "web", Prefix: true, Access: acl.Read}, all}, acl.DefaultDeny, "a"), false},
		{"one rule fewer", acl.Compile([]acl.Rule{web}, acl.DefaultDeny, "a"), false},
		{"default allow", acl.Compile([]acl.Rule{web, all}, acl.DefaultAllow, "a"), false},
		{"allow all", acl.AllowAll(), false},
	} {
		if got := fp(tc.authz) == base; got != tc.same {
			t.Errorf("%s: same fingerprint = %v, want %v", tc.name, got, tc.same)
		}
	}
}
