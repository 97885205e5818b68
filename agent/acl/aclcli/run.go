package aclcli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Env is what the commands need from the process: streams and the
// client for the -http-addr and -token flags ("" : CONSUL_HTTP_ADDR and
// CONSUL_HTTP_TOKEN, as the official client reads them).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Client         func(httpAddr, token string) (*api.Client, error)
}

const usage = `Usage: cairn acl <subcommand> [options] [args]

  Manages the ACL system as "consul acl" does: bootstrap it, then create
  policies, roles and tokens.

Subcommands:
    bootstrap    Bootstrap the ACL system and print the management token
    policy       Manage policies (create, list, read, update, delete)
    role         Manage roles (create, list, read, update, delete)
    token        Manage tokens (create, list, read, update, delete, clone)
`

// Run runs `cairn acl args...` and returns the exit code.
func Run(args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 1
	}
	c := &cmd{env: env}
	sub := map[string]map[string]func([]string) int{
		"policy": {"create": c.policyCreate, "list": c.policyList, "read": c.policyRead, "update": c.policyUpdate, "delete": c.policyDelete},
		"role":   {"create": c.roleCreate, "list": c.roleList, "read": c.roleRead, "update": c.roleUpdate, "delete": c.roleDelete},
		"token":  {"create": c.tokenCreate, "list": c.tokenList, "read": c.tokenRead, "update": c.tokenUpdate, "delete": c.tokenDelete, "clone": c.tokenClone},
	}
	switch args[0] {
	case "bootstrap":
		return c.bootstrap(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	}
	cmds, ok := sub[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "cairn acl: unknown subcommand %q\n\n%s", args[0], usage)
		return 1
	}
	var names []string
	for n := range cmds {
		names = append(names, n)
	}
	if len(args) < 2 || cmds[args[1]] == nil {
		fmt.Fprintf(env.Stderr, "Usage: cairn acl %s <%s> [options]\n", args[0], strings.Join(sortStrings(names), "|"))
		return 1
	}
	return cmds[args[1]](args[2:])
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

type cmd struct {
	env      Env
	httpAddr string
	token    string
	format   string
	showMeta bool
	client   *api.Client
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func (c *cmd) flags(name string, meta bool) *flag.FlagSet {
	fs := flag.NewFlagSet("cairn acl "+name, flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	fs.StringVar(&c.httpAddr, "http-addr", "", "Address of the agent's HTTP API. Default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500.")
	fs.StringVar(&c.token, "token", "", "ACL token for the request. Default: CONSUL_HTTP_TOKEN.")
	fs.StringVar(&c.format, "format", "pretty", "Output format: pretty or json.")
	if meta {
		fs.BoolVar(&c.showMeta, "meta", false, "Also print the hash and the create and modify indexes.")
	}
	return fs
}

// parse parses flags and builds the client; false means exit 1.
func (c *cmd) parse(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if c.format != "pretty" && c.format != "json" {
		fmt.Fprintf(c.env.Stderr, "Invalid format %q: use -format=pretty or -format=json\n", c.format)
		return false
	}
	if len(fs.Args()) > 0 {
		fmt.Fprintf(c.env.Stderr, "Too many arguments (expected 0, got %d)\n", len(fs.Args()))
		return false
	}
	cl, err := c.env.Client(c.httpAddr, c.token)
	if err != nil {
		fmt.Fprintf(c.env.Stderr, "Error connecting to Consul agent: %s\n", err)
		return false
	}
	c.client = cl
	return true
}

func (c *cmd) f() formatter { return formatter{json: c.format == "json", showMeta: c.showMeta} }

func (c *cmd) fail(format string, a ...any) int {
	fmt.Fprintf(c.env.Stderr, format+"\n", a...)
	return 1
}

func (c *cmd) print(s string) int {
	fmt.Fprint(c.env.Stdout, s)
	return 0
}

// ---- bootstrap ----

func (c *cmd) bootstrap(args []string) int {
	fs := c.flags("bootstrap", false)
	if !c.parse(fs, args) {
		return 1
	}
	t, _, err := c.client.ACL().Bootstrap()
	if err != nil {
		return c.fail("Failed ACL bootstrapping: %v", err)
	}
	return c.print(c.f().token(t))
}

// ---- policies ----

// rules reads -rules: the rules, @file, or - for stdin.
func (c *cmd) rules(v string) (string, error) {
	switch {
	case v == "-":
		b, err := io.ReadAll(c.env.Stdin)
		return string(b), err
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("Failed to read file: %v", err)
		}
		return string(b), nil
	}
	return v, nil
}

func (c *cmd) policyCreate(args []string) int {
	fs := c.flags("policy create", true)
	name := fs.String("name", "", "The new policy's name. Required.")
	desc := fs.String("description", "", "A description of the policy.")
	rules := fs.String("rules", "", "The policy rules: HCL or JSON, @file, or - for stdin.")
	var dcs multi
	fs.Var(&dcs, "valid-datacenter", "Datacenter the policy is valid in (repeatable); default all.")
	if !c.parse(fs, args) {
		return 1
	}
	if *name == "" {
		return c.fail("Missing require '-name' flag")
	}
	r, err := c.rules(*rules)
	if err != nil {
		return c.fail("Error loading rules: %v", err)
	}
	p, _, err := c.client.ACL().PolicyCreate(&api.ACLPolicy{Name: *name, Description: *desc, Rules: r, Datacenters: dcs}, nil)
	if err != nil {
		return c.fail("Failed to create new policy: %v", err)
	}
	return c.print(c.f().policy(p))
}

func (c *cmd) policyList(args []string) int {
	if !c.parse(c.flags("policy list", true), args) {
		return 1
	}
	ps, _, err := c.client.ACL().PolicyList(nil)
	if err != nil {
		return c.fail("Failed to retrieve the policy list: %v", err)
	}
	return c.print(c.f().policyList(ps))
}

// findPolicy reads the policy -id or -name names.
func (c *cmd) findPolicy(id, name string) (*api.ACLPolicy, error) {
	if id == "" && name == "" {
		return nil, fmt.Errorf("Must specify either the -id or -name parameters")
	}
	var p *api.ACLPolicy
	var err error
	if id != "" {
		if id, err = c.policyID(id); err != nil {
			return nil, fmt.Errorf("Error determining policy ID: %v", err)
		}
		p, _, err = c.client.ACL().PolicyRead(id, nil)
	} else {
		p, _, err = c.client.ACL().PolicyReadByName(name, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("Error reading policy %q: %v", id+name, err)
	}
	if p == nil {
		return nil, fmt.Errorf("Error reading policy %q: not found", id+name)
	}
	return p, nil
}

func (c *cmd) policyRead(args []string) int {
	fs := c.flags("policy read", true)
	id := fs.String("id", "", "The ID of the policy to read, or a unique prefix of it.")
	name := fs.String("name", "", "The name of the policy to read.")
	if !c.parse(fs, args) {
		return 1
	}
	p, err := c.findPolicy(*id, *name)
	if err != nil {
		return c.fail("%v", err)
	}
	return c.print(c.f().policy(p))
}

func (c *cmd) policyUpdate(args []string) int {
	fs := c.flags("policy update", true)
	id := fs.String("id", "", "The ID of the policy to update, or a unique prefix of it (or -name).")
	name := fs.String("name", "", "With -id, the policy's new name; without, the name of the policy to update.")
	desc := fs.String("description", "", "The policy's new description.")
	rules := fs.String("rules", "", "The policy's new rules: HCL or JSON, @file, or - for stdin.")
	var dcs multi
	fs.Var(&dcs, "valid-datacenter", "Datacenter the policy is valid in (repeatable); replaces the list.")
	if !c.parse(fs, args) {
		return 1
	}
	lookupName := *name
	if *id != "" {
		lookupName = ""
	}
	p, err := c.findPolicy(*id, lookupName)
	if err != nil {
		return c.fail("%v", err)
	}
	if *name != "" {
		p.Name = *name
	}
	if *desc != "" {
		p.Description = *desc
	}
	if *rules != "" {
		r, err := c.rules(*rules)
		if err != nil {
			return c.fail("Error loading rules: %v", err)
		}
		p.Rules = r
	}
	if len(dcs) > 0 {
		p.Datacenters = dcs
	}
	up, _, err := c.client.ACL().PolicyUpdate(p, nil)
	if err != nil {
		return c.fail("Failed to update policy %s: %v", p.ID, err)
	}
	return c.print(c.f().policy(up))
}

func (c *cmd) policyDelete(args []string) int {
	fs := c.flags("policy delete", false)
	id := fs.String("id", "", "The ID of the policy to delete, or a unique prefix of it.")
	name := fs.String("name", "", "The name of the policy to delete.")
	if !c.parse(fs, args) {
		return 1
	}
	p, err := c.findPolicy(*id, *name)
	if err != nil {
		return c.fail("%v", err)
	}
	if _, err := c.client.ACL().PolicyDelete(p.ID, nil); err != nil {
		return c.fail("Error deleting policy %q: %v", p.ID, err)
	}
	return c.print(fmt.Sprintf("Policy %q deleted successfully\n", p.ID))
}

// ---- links and identities ----

type linkFlags struct {
	policyIDs, policyNames, roleIDs, roleNames, services, nodes multi
}

func (l *linkFlags) add(fs *flag.FlagSet, roles bool) {
	fs.Var(&l.policyIDs, "policy-id", "ID of a policy to link, or a unique prefix of it (repeatable).")
	fs.Var(&l.policyNames, "policy-name", "Name of a policy to link (repeatable).")
	if roles {
		fs.Var(&l.roleIDs, "role-id", "ID of a role to link, or a unique prefix of it (repeatable).")
		fs.Var(&l.roleNames, "role-name", "Name of a role to link (repeatable).")
	}
	fs.Var(&l.services, "service-identity", "A service identity, NAME or NAME:DC1,DC2 (repeatable).")
	fs.Var(&l.nodes, "node-identity", "A node identity, NAME:DATACENTER (repeatable).")
}

func (l *linkFlags) identities() ([]*api.ACLServiceIdentity, []*api.ACLNodeIdentity, error) {
	var svcs []*api.ACLServiceIdentity
	for _, s := range l.services {
		name, dcs, _ := strings.Cut(s, ":")
		si := &api.ACLServiceIdentity{ServiceName: name}
		if dcs != "" {
			si.Datacenters = strings.Split(dcs, ",")
		}
		svcs = append(svcs, si)
	}
	var nodes []*api.ACLNodeIdentity
	for _, n := range l.nodes {
		name, dc, ok := strings.Cut(n, ":")
		if !ok || name == "" || dc == "" {
			return nil, nil, fmt.Errorf("Malformed -node-identity argument: %q (use NAME:DATACENTER)", n)
		}
		nodes = append(nodes, &api.ACLNodeIdentity{NodeName: name, Datacenter: dc})
	}
	return svcs, nodes, nil
}

// ---- tokens ----

func (c *cmd) tokenCreate(args []string) int {
	fs := c.flags("token create", true)
	desc := fs.String("description", "", "A description of the token.")
	accessor := fs.String("accessor", "", "The token's AccessorID (a UUID); default generated.")
	secret := fs.String("secret", "", "The token's SecretID (a UUID); default generated.")
	local := fs.Bool("local", false, "Make a datacenter-local token.")
	ttl := fs.Duration("expires-ttl", 0, "How long until the token expires (1m to 24h); default never.")
	var l linkFlags
	l.add(fs, true)
	if !c.parse(fs, args) {
		return 1
	}
	svcs, nodes, err := l.identities()
	if err != nil {
		return c.fail("%v", err)
	}
	pols, roles, err := c.links(&l)
	if err != nil {
		return c.fail("%v", err)
	}
	t := &api.ACLToken{Description: *desc, AccessorID: *accessor, SecretID: *secret, Local: *local,
		ExpirationTTL: *ttl, Policies: pols, Roles: roles, ServiceIdentities: svcs, NodeIdentities: nodes}
	out, _, err := c.client.ACL().TokenCreate(t, nil)
	if err != nil {
		return c.fail("Failed to create new token: %v", err)
	}
	return c.print(c.f().token(out))
}

func (c *cmd) tokenList(args []string) int {
	if !c.parse(c.flags("token list", true), args) {
		return 1
	}
	ts, _, err := c.client.ACL().TokenList(nil)
	if err != nil {
		return c.fail("Failed to retrieve the token list: %v", err)
	}
	return c.print(c.f().tokenList(ts))
}

// accessorFlag adds -accessor-id and its older name -id.
func accessorFlag(fs *flag.FlagSet) *string {
	s := new(string)
	fs.StringVar(s, "accessor-id", "", "The AccessorID of the token, a unique prefix of it, or \"anonymous\".")
	fs.StringVar(s, "id", "", "The AccessorID of the token, a unique prefix of it, or \"anonymous\" (older name of -accessor-id).")
	return s
}

func (c *cmd) tokenRead(args []string) int {
	fs := c.flags("token read", true)
	id := accessorFlag(fs)
	self := fs.Bool("self", false, "Read the token the request carries.")
	if !c.parse(fs, args) {
		return 1
	}
	var t *api.ACLToken
	var err error
	switch {
	case *self:
		t, _, err = c.client.ACL().TokenReadSelf(nil)
	case *id != "":
		if *id, err = c.tokenID(*id); err != nil {
			return c.fail("Error determining token ID: %v", err)
		}
		t, _, err = c.client.ACL().TokenRead(*id, nil)
	default:
		return c.fail("Must specify the -accessor-id parameter")
	}
	if err != nil {
		return c.fail("Error reading token %q: %v", *id, err)
	}
	return c.print(c.f().token(t))
}

func (c *cmd) tokenUpdate(args []string) int {
	fs := c.flags("token update", true)
	id := accessorFlag(fs)
	desc := fs.String("description", "", "The token's new description.")
	mergePolicies := fs.Bool("merge-policies", false, "Add the given policies to the token's instead of replacing them.")
	mergeRoles := fs.Bool("merge-roles", false, "Add the given roles to the token's instead of replacing them.")
	mergeSvcs := fs.Bool("merge-service-identities", false, "Add the given service identities instead of replacing them.")
	mergeNodes := fs.Bool("merge-node-identities", false, "Add the given node identities instead of replacing them.")
	var l linkFlags
	l.add(fs, true)
	if !c.parse(fs, args) {
		return 1
	}
	if *id == "" {
		return c.fail("Cannot update a token without specifying the -accessor-id parameter")
	}
	var err error
	if *id, err = c.tokenID(*id); err != nil {
		return c.fail("Error determining token ID: %v", err)
	}
	svcs, nodes, err := l.identities()
	if err != nil {
		return c.fail("%v", err)
	}
	pols, roles, err := c.links(&l)
	if err != nil {
		return c.fail("%v", err)
	}
	t, _, err := c.client.ACL().TokenRead(*id, nil)
	if err != nil {
		return c.fail("Error when retrieving current token: %v", err)
	}
	if *desc != "" {
		t.Description = *desc
	}
	set := func(merge bool, n int, apply func(bool)) {
		if merge || n > 0 {
			apply(merge)
		}
	}
	set(*mergePolicies, len(l.policyIDs)+len(l.policyNames), func(merge bool) {
		if !merge {
			t.Policies = nil
		}
		t.Policies = append(t.Policies, pols...)
	})
	set(*mergeRoles, len(l.roleIDs)+len(l.roleNames), func(merge bool) {
		if !merge {
			t.Roles = nil
		}
		t.Roles = append(t.Roles, roles...)
	})
	set(*mergeSvcs, len(svcs), func(merge bool) {
		if !merge {
			t.ServiceIdentities = nil
		}
		t.ServiceIdentities = append(t.ServiceIdentities, svcs...)
	})
	set(*mergeNodes, len(nodes), func(merge bool) {
		if !merge {
			t.NodeIdentities = nil
		}
		t.NodeIdentities = append(t.NodeIdentities, nodes...)
	})
	up, _, err := c.client.ACL().TokenUpdate(t, nil)
	if err != nil {
		return c.fail("Failed to update token %s: %v", *id, err)
	}
	return c.print(c.f().token(up))
}

func (c *cmd) tokenDelete(args []string) int {
	fs := c.flags("token delete", false)
	id := accessorFlag(fs)
	if !c.parse(fs, args) {
		return 1
	}
	if *id == "" {
		return c.fail("Must specify the -accessor-id parameter")
	}
	var err error
	if *id, err = c.tokenID(*id); err != nil {
		return c.fail("Error determining token ID: %v", err)
	}
	if _, err := c.client.ACL().TokenDelete(*id, nil); err != nil {
		return c.fail("Error deleting token %q: %v", *id, err)
	}
	return c.print(fmt.Sprintf("Token %q deleted successfully\n", *id))
}

func (c *cmd) tokenClone(args []string) int {
	fs := c.flags("token clone", true)
	id := accessorFlag(fs)
	desc := fs.String("description", "", "The clone's description; default the original's.")
	if !c.parse(fs, args) {
		return 1
	}
	if *id == "" {
		return c.fail("Cannot clone a token without specifying the -accessor-id parameter")
	}
	var err error
	if *id, err = c.tokenID(*id); err != nil {
		return c.fail("Error determining token ID: %v", err)
	}
	t, _, err := c.client.ACL().TokenClone(*id, *desc, nil)
	if err != nil {
		return c.fail("Failed to clone token: %v", err)
	}
	return c.print(c.f().token(t))
}

// ---- roles ----

func rolePolicies(pols []*api.ACLTokenPolicyLink) []*api.ACLRolePolicyLink {
	var out []*api.ACLRolePolicyLink
	for _, p := range pols {
		out = append(out, &api.ACLRolePolicyLink{ID: p.ID, Name: p.Name})
	}
	return out
}

func (c *cmd) roleCreate(args []string) int {
	fs := c.flags("role create", true)
	name := fs.String("name", "", "The new role's name. Required.")
	desc := fs.String("description", "", "A description of the role.")
	var l linkFlags
	l.add(fs, false)
	if !c.parse(fs, args) {
		return 1
	}
	if *name == "" {
		return c.fail("Missing require '-name' flag")
	}
	svcs, nodes, err := l.identities()
	if err != nil {
		return c.fail("%v", err)
	}
	pols, _, err := c.links(&l)
	if err != nil {
		return c.fail("%v", err)
	}
	r, _, err := c.client.ACL().RoleCreate(&api.ACLRole{Name: *name, Description: *desc, Policies: rolePolicies(pols),
		ServiceIdentities: svcs, NodeIdentities: nodes}, nil)
	if err != nil {
		return c.fail("Failed to create new role: %v", err)
	}
	return c.print(c.f().role(r))
}

func (c *cmd) roleList(args []string) int {
	if !c.parse(c.flags("role list", true), args) {
		return 1
	}
	rs, _, err := c.client.ACL().RoleList(nil)
	if err != nil {
		return c.fail("Failed to retrieve the role list: %v", err)
	}
	return c.print(c.f().roleList(rs))
}

func (c *cmd) findRole(id, name string) (*api.ACLRole, error) {
	if id == "" && name == "" {
		return nil, fmt.Errorf("Must specify either the -id or -name parameters")
	}
	var r *api.ACLRole
	var err error
	if id != "" {
		if id, err = c.roleID(id); err != nil {
			return nil, fmt.Errorf("Error determining role ID: %v", err)
		}
		r, _, err = c.client.ACL().RoleRead(id, nil)
	} else {
		r, _, err = c.client.ACL().RoleReadByName(name, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("Error reading role %q: %v", id+name, err)
	}
	if r == nil {
		return nil, fmt.Errorf("Role not found with ID %q", id+name)
	}
	return r, nil
}

func (c *cmd) roleRead(args []string) int {
	fs := c.flags("role read", true)
	id := fs.String("id", "", "The ID of the role to read, or a unique prefix of it.")
	name := fs.String("name", "", "The name of the role to read.")
	if !c.parse(fs, args) {
		return 1
	}
	r, err := c.findRole(*id, *name)
	if err != nil {
		return c.fail("%v", err)
	}
	return c.print(c.f().role(r))
}

func (c *cmd) roleUpdate(args []string) int {
	fs := c.flags("role update", true)
	id := fs.String("id", "", "The ID of the role to update, or a unique prefix of it. Required.")
	name := fs.String("name", "", "The role's new name.")
	desc := fs.String("description", "", "The role's new description.")
	noMerge := fs.Bool("no-merge", false, "Replace the role's policies and identities instead of adding to them.")
	var l linkFlags
	l.add(fs, false)
	if !c.parse(fs, args) {
		return 1
	}
	if *id == "" {
		return c.fail("Cannot update a role without specifying the -id parameter")
	}
	r, err := c.findRole(*id, "")
	if err != nil {
		return c.fail("%v", err)
	}
	svcs, nodes, err := l.identities()
	if err != nil {
		return c.fail("%v", err)
	}
	pols, _, err := c.links(&l)
	if err != nil {
		return c.fail("%v", err)
	}
	if *name != "" {
		r.Name = *name
	}
	if *desc != "" {
		r.Description = *desc
	}
	if *noMerge {
		r.Policies, r.ServiceIdentities, r.NodeIdentities = nil, nil, nil
	}
	r.Policies = append(r.Policies, rolePolicies(pols)...)
	r.ServiceIdentities = append(r.ServiceIdentities, svcs...)
	r.NodeIdentities = append(r.NodeIdentities, nodes...)
	up, _, err := c.client.ACL().RoleUpdate(r, nil)
	if err != nil {
		return c.fail("Failed to update role %s: %v", r.ID, err)
	}
	return c.print(c.f().role(up))
}

func (c *cmd) roleDelete(args []string) int {
	fs := c.flags("role delete", false)
	id := fs.String("id", "", "The ID of the role to delete, or a unique prefix of it.")
	name := fs.String("name", "", "The name of the role to delete.")
	if !c.parse(fs, args) {
		return 1
	}
	r, err := c.findRole(*id, *name)
	if err != nil {
		return c.fail("%v", err)
	}
	if _, err := c.client.ACL().RoleDelete(r.ID, nil); err != nil {
		return c.fail("Error deleting role %q: %v", r.ID, err)
	}
	return c.print(fmt.Sprintf("Role %q deleted successfully\n", r.ID))
}
