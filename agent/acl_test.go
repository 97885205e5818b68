package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"
)

// aclClient is a client of r carrying token.
func aclClient(t *testing.T, r *running, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: r.HTTPAddr().String(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitToken waits until token resolves (the leader creates the initial
// management token after it is elected).
func waitToken(t *testing.T, c *api.Client) *api.ACLToken {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tok, _, err := c.ACL().TokenReadSelf(nil)
		if err == nil {
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("token never resolved: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API, as a client would
	}
}

func aclDevConfig(t *testing.T) Config {
	c := serverConfig(t.TempDir())
	c.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny", InitialManagement: "root", EnableTokenPersistence: true}
	return c
}

// TestACLOfficialClient drives the ACL system with the official client:
// policies, roles, tokens (create, read, self, update, clone, delete,
// list filters), and the refusals a caller without acl rights gets.
func TestACLOfficialClient(t *testing.T) {
	r := start(t, aclDevConfig(t))
	root := aclClient(t, r, "root")
	rootTok := waitToken(t, root)
	if len(rootTok.Policies) != 1 || rootTok.Policies[0].Name != "global-management" {
		t.Fatalf("initial management token = %+v", rootTok)
	}
	a := root.ACL()

	// Anonymous: denied with Consul's text.
	_, _, err := aclClient(t, r, "").ACL().TokenList(nil)
	if err == nil || !strings.Contains(err.Error(), "403 (Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token.)") {
		t.Errorf("anonymous token list: %v", err)
	}
	_, _, err = aclClient(t, r, "not-a-token").ACL().PolicyList(nil)
	if err == nil || !strings.Contains(err.Error(), "403 (ACL not found)") {
		t.Errorf("unknown token: %v", err)
	}
	// Bootstrap is refused: the initial management token bootstrapped.
	_, _, err = a.Bootstrap()
	if err == nil || !strings.Contains(err.Error(), "403 (Permission denied: ACL bootstrap no longer allowed (reset index: ") {
		t.Errorf("bootstrap after initial management: %v", err)
	}

	pol, _, err := a.PolicyCreate(&api.ACLPolicy{Name: "kv-app", Description: "app keys",
		Rules: `key_prefix "app/" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.PolicyCreate(&api.ACLPolicy{Name: "bad", Rules: `key_prefix "" { policy = "rw" }`}, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("bad rules: %v, want 400", err)
	}
	byName, _, err := a.PolicyReadByName("kv-app", nil)
	if err != nil || byName.ID != pol.ID || byName.Rules != pol.Rules {
		t.Errorf("policy by name = %+v, %v", byName, err)
	}
	pols, _, err := a.PolicyList(nil)
	if err != nil || len(pols) != 3 {
		t.Errorf("policy list = %d, %v; want the two built-in and kv-app", len(pols), err)
	}
	role, _, err := a.RoleCreate(&api.ACLRole{Name: "reader", Policies: []*api.ACLRolePolicyLink{{Name: "builtin/global-read-only"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := a.RoleReadByName("reader", nil); err != nil || got.ID != role.ID || got.Policies[0].ID != "00000000-0000-0000-0000-000000000002" {
		t.Errorf("role by name = %+v, %v", got, err)
	}

	tok, _, err := a.TokenCreate(&api.ACLToken{Description: "app", Policies: []*api.ACLTokenPolicyLink{{Name: "kv-app"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	self, _, err := aclClient(t, r, tok.SecretID).ACL().TokenReadSelf(nil)
	if err != nil || self.AccessorID != tok.AccessorID {
		t.Errorf("self = %+v, %v", self, err)
	}
	_, _, err = aclClient(t, r, tok.SecretID).ACL().TokenList(nil)
	if want := "Permission denied: token with AccessorID '" + tok.AccessorID + "' lacks permission 'acl:read'"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("app token lists tokens: %v", err)
	}
	// A reader (via its role) sees tokens with secrets hidden.
	reader, _, err := a.TokenCreate(&api.ACLToken{Roles: []*api.ACLTokenRoleLink{{ID: role.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen, _, err := aclClient(t, r, reader.SecretID).ACL().TokenRead(tok.AccessorID, nil)
	if err != nil || seen.SecretID != "<hidden>" {
		t.Errorf("reader reads %+v, %v; want the secret hidden", seen, err)
	}
	if _, _, err := aclClient(t, r, reader.SecretID).ACL().PolicyCreate(&api.ACLPolicy{Name: "x"}, nil); err == nil || !strings.Contains(err.Error(), "acl:write") {
		t.Errorf("reader creates a policy: %v", err)
	}

	tok.Description = "app v2"
	tok.Policies = append(tok.Policies, &api.ACLTokenPolicyLink{ID: "00000000-0000-0000-0000-000000000002"})
	up, _, err := a.TokenUpdate(tok, nil)
	if err != nil || up.Description != "app v2" || len(up.Policies) != 2 || up.CreateIndex != tok.CreateIndex {
		t.Errorf("update = %+v, %v", up, err)
	}
	clone, _, err := a.TokenClone(tok.AccessorID, "copy", nil)
	if err != nil || clone.Description != "copy" || len(clone.Policies) != 2 {
		t.Errorf("clone = %+v, %v", clone, err)
	}
	list, _, err := a.TokenListFiltered(api.ACLTokenFilterOptions{Policy: pol.ID}, nil)
	if err != nil || len(list) != 2 {
		t.Errorf("tokens with kv-app = %d, %v; want the token and its clone", len(list), err)
	}
	if _, err := a.TokenDelete(clone.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.TokenRead(clone.AccessorID, nil); err == nil || !strings.Contains(err.Error(), "403 (ACL not found)") {
		t.Errorf("read deleted token: %v", err)
	}
	if _, _, err := aclClient(t, r, clone.SecretID).ACL().TokenReadSelf(nil); err == nil {
		t.Error("deleted token still resolves")
	}
	if _, err := a.PolicyDelete(pol.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PolicyDelete("00000000-0000-0000-0000-000000000001", nil); err == nil {
		t.Error("global-management deleted")
	}
	rep, _, err := a.Replication(nil)
	if err != nil || rep.Enabled {
		t.Errorf("replication = %+v, %v", rep, err)
	}

	// Agent tokens: set through the API, persisted in the data dir.
	if _, err := root.Agent().UpdateDefaultACLToken(reader.SecretID, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(r.DataDir(), "acl-tokens.json"))
	var persisted map[string]string
	if err != nil || json.Unmarshal(b, &persisted) != nil || persisted["default"] != reader.SecretID {
		t.Errorf("acl-tokens.json = %s, %v", b, err)
	}
	// The default token now stands in for requests without one.
	if _, _, err := aclClient(t, r, "").ACL().PolicyList(nil); err != nil {
		t.Errorf("with a default token that may read ACLs, a request without one: %v", err)
	}
	if _, err := aclClient(t, r, tok.SecretID).Agent().UpdateAgentACLToken("x", nil); err == nil {
		t.Error("a token without acl:write set an agent token")
	}
}

func TestACLBootstrapAPI(t *testing.T) {
	c := serverConfig(t.TempDir())
	c.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny"}
	r := start(t, c)
	anon := aclClient(t, r, "root")
	_, _, err := anon.ACL().TokenList(nil)
	if err == nil || !strings.Contains(err.Error(), "403 (ACL system must be bootstrapped before making any requests that require authorization: ACL not found)") {
		t.Errorf("before bootstrap: %v", err)
	}
	tok, _, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	toks, _, err := aclClient(t, r, tok.SecretID).ACL().TokenList(nil)
	if err != nil || len(toks) != 2 {
		t.Errorf("after bootstrap: %d tokens, %v; want management and anonymous", len(toks), err)
	}
	_, _, err = anon.ACL().Bootstrap()
	if err == nil || !strings.Contains(err.Error(), "ACL bootstrap no longer allowed") {
		t.Fatalf("second bootstrap: %v", err)
	}
	idx := strings.TrimSuffix(err.Error()[strings.Index(err.Error(), "reset index: ")+len("reset index: "):], "))")
	if err := os.WriteFile(filepath.Join(r.DataDir(), "acl-bootstrap-reset"), []byte(idx), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := anon.ACL().Bootstrap(); err != nil {
		t.Errorf("bootstrap with the reset file (index %s): %v", idx, err)
	}
}

func TestACLConfigFile(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"new.hcl": `acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  enable_token_persistence = true
  enable_key_list_policy = true
  token_ttl = "45s"
  tokens {
    initial_management = "m"
    agent = "a"
    default = "d"
    agent_recovery = "r"
    dns = "n"
  }
}`,
		"old.json": `{"acl_default_policy": "deny", "acl_master_token": "m", "acl_token": "d", "acl_agent_token": "a", "acl_agent_master_token": "r", "acl_ttl": "45s", "acl_enable_key_list_policy": true, "acl": {"enabled": true, "enable_token_persistence": true}}`,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(src), 0o600)
		c := DefaultConfig()
		if err := LoadConfigFile(&c, path); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := ACLConfig{Enabled: true, DefaultPolicy: "deny", EnableTokenPersistence: true, EnableKeyListPolicy: true, TokenTTL: 45 * time.Second,
			InitialManagement: "m", Agent: "a", Default: "d", AgentRecovery: "r"}
		if name == "new.hcl" {
			want.DownPolicy, want.DNS = "extend-cache", "n"
		}
		if c.ACL != want {
			t.Errorf("%s: %+v\nwant %+v", name, c.ACL, want)
		}
	}
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte(`acl { default_policy = "maybe" }`), 0o600)
	c := DefaultConfig()
	if err := LoadConfigFile(&c, bad); err != nil {
		t.Fatal(err)
	}
	if err := c.ACL.Validate(); err == nil || !strings.Contains(err.Error(), `acl.default_policy = "maybe"`) {
		t.Errorf("bad default policy: %v", err)
	}
}

// TestACLClientAgent: a client agent resolves tokens through the
// servers and keeps them for token_ttl (as Consul's clients do): a token
// deleted on a server still works on the client until then, while a
// write through the client empties the client's cache at once, and the
// server's cache empties by its watch of the ACL records.
func TestACLClientAgent(t *testing.T) {
	server := clusterConfig(t, "s0", true, 1)
	server.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny", InitialManagement: "root"}
	s := startAgent(t, server)
	client := clusterConfig(t, "c0", false, 0, s.SerfAddr())
	client.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny", TokenTTL: time.Hour}
	c := startAgent(t, client)
	waitLeader(t, s.client)
	waitLeader(t, c.client)

	onClient, onServer := aclClient(t, c, "root"), aclClient(t, s, "root")
	waitToken(t, onClient)
	newToken := func() string {
		tok, _, err := onClient.ACL().TokenCreate(&api.ACLToken{
			Policies: []*api.ACLTokenPolicyLink{{ID: "00000000-0000-0000-0000-000000000002"}}}, nil)
		if err != nil {
			t.Fatalf("create through the client: %v", err)
		}
		for _, a := range []*running{c, s} { // resolve (and cache) on both
			if _, _, err := aclClient(t, a, tok.SecretID).ACL().PolicyList(nil); err != nil {
				t.Fatalf("the new token on %s: %v", a.Config().NodeName, err)
			}
		}
		return tok.AccessorID
	}
	// Deleted through the server: the client's cache (1h here) keeps it.
	first := newToken()
	tok, _, _ := onServer.ACL().TokenRead(first, nil)
	if _, err := onServer.ACL().TokenDelete(first, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := aclClient(t, c, tok.SecretID).ACL().PolicyList(nil); err != nil {
		t.Errorf("within token_ttl the client forgot the token: %v", err)
	}
	if _, _, err := aclClient(t, s, tok.SecretID).ACL().PolicyList(nil); err == nil {
		t.Error("the server still honours a token deleted through it")
	}

	// Deleted through the client: gone there at once, and on the server
	// once its watch sees the change.
	second := newToken()
	tok, _, _ = onServer.ACL().TokenRead(second, nil)
	if _, err := onClient.ACL().TokenDelete(second, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := aclClient(t, c, tok.SecretID).ACL().PolicyList(nil); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Errorf("deleted through the client, the token still works there: %v", err)
	}
	eventually(t, "the server drops a token deleted through the client", 10*time.Second, func() (bool, string) {
		_, _, err := aclClient(t, s, tok.SecretID).ACL().PolicyList(nil)
		return err != nil, fmt.Sprint(err)
	})
}

// TestACLKeyListPolicy: with acl.enable_key_list_policy an agent answers
// a recursive read or key listing only for a token with "list" on the
// prefix (403 for "read" alone); without it the same token gets the keys
// it may read.
func TestACLKeyListPolicy(t *testing.T) {
	for _, policy := range []bool{false, true} {
		t.Run(fmt.Sprintf("enable_key_list_policy=%v", policy), func(t *testing.T) {
			cfg := aclDevConfig(t)
			cfg.ACL.EnableKeyListPolicy = policy
			r := start(t, cfg)
			root := aclClient(t, r, "root")
			waitToken(t, root)
			if _, err := root.KV().Put(&api.KVPair{Key: "app/x", Value: []byte("v")}, nil); err != nil {
				t.Fatal(err)
			}
			tokens := map[string]string{}
			for name, rule := range map[string]string{"read": "read", "list": "list"} {
				pol, _, err := root.ACL().PolicyCreate(&api.ACLPolicy{Name: "app-" + name, Rules: `key_prefix "app/" { policy = "` + rule + `" }`}, nil)
				if err != nil {
					t.Fatal(err)
				}
				tok, _, err := root.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				tokens[name] = tok.SecretID
			}
			for name, secret := range tokens {
				kvc := aclClient(t, r, secret).KV()
				pairs, _, listErr := kvc.List("app/", nil)
				keys, _, keysErr := kvc.Keys("app/", "", nil)
				refused := policy && name == "read"
				for what, err := range map[string]error{"List": listErr, "Keys": keysErr} {
					if got := err != nil && strings.Contains(err.Error(), "403"); got != refused {
						t.Errorf("%s(app/) with key_prefix %q = %v; want a 403: %v", what, name, err, refused)
					}
				}
				if !refused && (len(pairs) != 1 || len(keys) != 1) {
					t.Errorf("with key_prefix %q: %d entries, %d keys; want app/x", name, len(pairs), len(keys))
				}
			}
		})
	}
}

// TestDNSAnswersWithTheDNSToken: DNS answers with the agent's dns token
// when one is set (acl.tokens.dns), else with the default token, else
// with the anonymous token, as Consul's agents do.
func TestDNSAnswersWithTheDNSToken(t *testing.T) {
	cfg := aclDevConfig(t)
	cfg.Ports.DNS = 0
	r := start(t, cfg)
	root := aclClient(t, r, "root")
	waitToken(t, root)
	if err := root.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web", Name: "web", Address: "127.0.0.21", Port: 80}); err != nil {
		t.Fatal(err)
	}
	pol, _, err := root.ACL().PolicyCreate(&api.ACLPolicy{Name: "dns",
		Rules: `service_prefix "" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, _, err := root.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nobody, _, err := root.ACL().TokenCreate(&api.ACLToken{Description: "no policy"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := r.DNSAddr().String()
	answers := func(want bool, when string) {
		t.Helper()
		eventually(t, when, 10*time.Second, func() (bool, string) {
			m, err := dnsQuery(dnsAddr, "web.service.consul", mdns.TypeA)
			if err != nil {
				return false, err.Error()
			}
			got := m.Rcode == mdns.RcodeSuccess && len(m.Answer) == 1
			return got == want, fmt.Sprintf("%s with %d answers", mdns.RcodeToString[m.Rcode], len(m.Answer))
		})
	}
	answers(false, "anonymous (default deny): web.service.consul is NXDOMAIN")
	for _, step := range []struct {
		set   func(string, *api.WriteOptions) (*api.WriteMeta, error)
		token string
		want  bool
		when  string
	}{
		{root.Agent().UpdateDefaultACLToken, reader.SecretID, true, "a default token that reads services: answered"},
		{root.Agent().UpdateDNSToken, nobody.SecretID, false, "a dns token that reads nothing, over that default: NXDOMAIN"},
		{root.Agent().UpdateDefaultACLToken, nobody.SecretID, false, "both read nothing: NXDOMAIN"},
		{root.Agent().UpdateDNSToken, reader.SecretID, true, "a dns token that reads services, over a default that does not: answered"},
	} {
		if _, err := step.set(step.token, nil); err != nil {
			t.Fatalf("%s: setting the token: %v", step.when, err)
		}
		answers(step.want, step.when)
	}
}
