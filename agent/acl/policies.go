package acl

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/uuid"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9\-_]{1,128}$`)

// names maps policy and role IDs to names and back, read once per
// request that needs them.
type names struct {
	policies  map[string]string // ID -> name
	policyIDs map[string]string // name -> ID
	roles     map[string]string
	roleIDs   map[string]string
}

func (s *Store) names(ctx context.Context) (*names, error) {
	n := &names{policies: map[string]string{}, policyIDs: map[string]string{}, roles: map[string]string{}, roleIDs: map[string]string{}}
	_, ps, err := s.PolicyList(ctx, kv.QueryOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		n.policies[p.ID], n.policyIDs[p.Name] = p.Name, p.ID
	}
	_, rs, err := s.RoleList(ctx, kv.QueryOptions{}, "")
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		n.roles[r.ID], n.roleIDs[r.Name] = r.Name, r.ID
	}
	return n, nil
}

func (n *names) resolvePolicy(l *PolicyLink) error {
	switch {
	case l.ID != "":
		name, ok := n.policies[l.ID]
		if !ok {
			return invalid("No such ACL policy with ID %q", l.ID)
		}
		l.Name = name
	case l.Name != "":
		id, ok := n.policyIDs[l.Name]
		if !ok {
			return invalid("No such ACL policy with name %q", l.Name)
		}
		l.ID = id
	default:
		return invalid("a policy link needs an ID or a Name")
	}
	return nil
}

// fill sets the current names of t's links and drops links to policies
// and roles deleted since (as Consul does).
func (n *names) fill(t *Token) {
	t.Policies = n.fillPolicies(t.Policies)
	var rs []*RoleLink
	for _, l := range t.Roles {
		if name, ok := n.roles[l.ID]; ok {
			rs = append(rs, &RoleLink{ID: l.ID, Name: name})
		}
	}
	t.Roles = rs
}

func (n *names) fillPolicies(ls []*PolicyLink) []*PolicyLink {
	var ps []*PolicyLink
	for _, l := range ls {
		if name, ok := n.policies[l.ID]; ok {
			ps = append(ps, &PolicyLink{ID: l.ID, Name: name})
		}
	}
	return ps
}

// ---- Policies ----

func isBuiltinPolicy(id string) *Policy {
	for _, p := range builtinPolicies() {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func policyOps(p *Policy, old *Policy, oldEntry *kv.Entry) []kv.Op {
	stored := *p
	stored.CreateIndex, stored.ModifyIndex = 0, 0
	v, _ := json.Marshal(&stored)
	var ops []kv.Op
	if oldEntry == nil {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckNotExists, Key: policyPrefix + p.ID})
	} else {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckIndex, Key: policyPrefix + p.ID, Index: oldEntry.ModifyIndex})
	}
	if old == nil || old.Name != p.Name {
		if old != nil {
			ops = append(ops, kv.Op{Verb: kv.VerbDelete, Key: policyNamePfx + old.Name})
		}
		ops = append(ops, kv.Op{Verb: kv.VerbCheckNotExists, Key: policyNamePfx + p.Name},
			kv.Op{Verb: kv.VerbSet, Key: policyNamePfx + p.Name, Value: []byte(p.ID)})
	}
	return append(ops, kv.Op{Verb: kv.VerbSet, Key: policyPrefix + p.ID, Value: v})
}

func (s *Store) checkPolicy(p *Policy) error {
	if p.Name == "" {
		return invalid("Invalid Policy: no Name is set")
	}
	if !nameRE.MatchString(p.Name) && !(isBuiltinPolicy(p.ID) != nil && p.Name == isBuiltinPolicy(p.ID).Name) {
		return invalid("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
	}
	if _, err := ParseRules(p.Rules); err != nil {
		return invalid("Invalid Policy: %v", err)
	}
	return nil
}

func (s *Store) nameTaken(kind, name string) func(kv.Op) error {
	return func(op kv.Op) error {
		if strings.Contains(op.Key, "-name/") {
			return invalid("Invalid %s: A %s with Name %q already exists", kind, kind, name)
		}
		return invalid("the %s changed while it was being written; read it again and retry", strings.ToLower(kind))
	}
}

// PolicyCreate stores a new policy.
func (s *Store) PolicyCreate(ctx context.Context, p *Policy) (*Policy, error) {
	c := *p
	if c.ID != "" {
		return nil, invalid("Cannot specify an ID in Policy Creation; leave ID empty")
	}
	if err := s.checkPolicy(&c); err != nil {
		return nil, err
	}
	if isBuiltinName(c.Name) {
		return nil, invalid("Invalid Policy: A Policy with Name %q already exists", c.Name)
	}
	c.ID = uuid.NewString()
	c.SetHash()
	res, err := s.txn(ctx, policyOps(&c, nil, nil), s.nameTaken("Policy", c.Name))
	if err != nil {
		return nil, err
	}
	c.CreateIndex, c.ModifyIndex = indexOf(res, policyPrefix+c.ID)
	return &c, nil
}

func isBuiltinName(name string) bool {
	return name == GlobalManagementName || name == GlobalReadOnlyName
}

// PolicyUpdate replaces the policy p.ID. The built-in policies keep
// their name and rules; their description and datacenters may change.
func (s *Store) PolicyUpdate(ctx context.Context, p *Policy) (*Policy, error) {
	c := *p
	if c.ID == "" {
		return nil, invalid("Must specify an ID in Policy Update")
	}
	old, e, err := s.policyEntry(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, invalid("Cannot find policy %q", c.ID)
	}
	if b := isBuiltinPolicy(c.ID); b != nil {
		if c.Name != b.Name {
			return nil, invalid("Changing the Name for the builtin %s policy is not permitted", b.Name)
		}
		if c.Rules != b.Rules {
			return nil, invalid("Changing the Rules for the builtin %s policy is not permitted", b.Name)
		}
	} else if isBuiltinName(c.Name) {
		return nil, invalid("Invalid Policy: A Policy with Name %q already exists", c.Name)
	}
	if err := s.checkPolicy(&c); err != nil {
		return nil, err
	}
	c.SetHash()
	ops := policyOps(&c, old, e)
	if e == nil { // a built-in stored for the first time: no name key
		ops = slices.DeleteFunc(ops, func(op kv.Op) bool { return strings.HasPrefix(op.Key, policyNamePfx) })
	}
	res, err := s.txn(ctx, ops, s.nameTaken("Policy", c.Name))
	if err != nil {
		return nil, err
	}
	c.CreateIndex, c.ModifyIndex = indexOf(res, policyPrefix+c.ID)
	if e != nil {
		c.CreateIndex = e.CreateIndex
	}
	return &c, nil
}

// PolicyDelete removes the policy id; a missing one is no error.
func (s *Store) PolicyDelete(ctx context.Context, id string) error {
	if b := isBuiltinPolicy(id); b != nil {
		return invalid("Delete operation not permitted on the builtin %s policy", b.Name)
	}
	old, e, err := s.policyEntry(ctx, id)
	if err != nil || old == nil || e == nil {
		return err
	}
	_, err = s.txn(ctx, []kv.Op{{Verb: kv.VerbDelete, Key: policyPrefix + id}, {Verb: kv.VerbDelete, Key: policyNamePfx + old.Name}}, nil)
	return err
}

func (s *Store) policyEntry(ctx context.Context, id string) (*Policy, *kv.Entry, error) {
	var p Policy
	_, e, err := s.getJSON(ctx, kv.QueryOptions{}, policyPrefix+id, &p)
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		return isBuiltinPolicy(id), nil, nil
	}
	p.CreateIndex, p.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return &p, e, nil
}

// PolicyRead returns the policy id, nil when there is none.
func (s *Store) PolicyRead(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *Policy, error) {
	var p Policy
	meta, e, err := s.getJSON(ctx, q, policyPrefix+id, &p)
	if err != nil {
		return meta, nil, err
	}
	if e == nil {
		return meta, isBuiltinPolicy(id), nil
	}
	p.CreateIndex, p.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return meta, &p, nil
}

// PolicyReadByName returns the policy named name, nil when there is none.
func (s *Store) PolicyReadByName(ctx context.Context, q kv.QueryOptions, name string) (kv.QueryMeta, *Policy, error) {
	meta, e, err := s.cfg.KV.Get(ctx, q, policyNamePfx+name)
	if err != nil {
		return meta, nil, err
	}
	if e == nil {
		for _, b := range builtinPolicies() {
			if b.Name == name {
				return s.PolicyRead(ctx, q, b.ID)
			}
		}
		return meta, nil, nil
	}
	return s.PolicyRead(ctx, q, string(e.Value))
}

// PolicyList returns every policy, the built-in ones included, by ID.
func (s *Store) PolicyList(ctx context.Context, q kv.QueryOptions) (kv.QueryMeta, []*Policy, error) {
	meta, ents, err := s.cfg.KV.List(ctx, q, policyPrefix)
	if err != nil {
		return meta, nil, err
	}
	var out []*Policy
	for _, e := range ents {
		var p Policy
		if err := json.Unmarshal(e.Value, &p); err != nil {
			return meta, nil, fmt.Errorf("ACL record at %s is unreadable: %w", e.Key, err)
		}
		p.CreateIndex, p.ModifyIndex = e.CreateIndex, e.ModifyIndex
		out = append(out, &p)
	}
	for _, b := range builtinPolicies() {
		if !slices.ContainsFunc(out, func(p *Policy) bool { return p.ID == b.ID }) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *Policy) int { return strings.Compare(a.ID, b.ID) })
	return meta, out, nil
}

// ---- Roles ----

func (s *Store) checkRole(ctx context.Context, r *Role) error {
	if r.Name == "" {
		return invalid("Invalid Role: no Name is set")
	}
	if !nameRE.MatchString(r.Name) {
		return invalid("Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
	}
	n, err := s.names(ctx)
	if err != nil {
		return err
	}
	var ls []*PolicyLink
	for _, l := range r.Policies {
		c := &PolicyLink{ID: l.ID, Name: l.Name}
		if err := n.resolvePolicy(c); err != nil {
			return err
		}
		ls = append(ls, c)
	}
	r.Policies = dedupePolicies(ls)
	return checkIdentities(r.ServiceIdentities, r.NodeIdentities)
}

func roleOps(r *Role, old *Role, oldEntry *kv.Entry) []kv.Op {
	stored := *r
	stored.CreateIndex, stored.ModifyIndex = 0, 0
	stored.Policies = nil
	for _, p := range r.Policies {
		stored.Policies = append(stored.Policies, &PolicyLink{ID: p.ID})
	}
	v, _ := json.Marshal(&stored)
	var ops []kv.Op
	if oldEntry == nil {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckNotExists, Key: rolePrefix + r.ID})
	} else {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckIndex, Key: rolePrefix + r.ID, Index: oldEntry.ModifyIndex})
	}
	if old == nil || old.Name != r.Name {
		if old != nil {
			ops = append(ops, kv.Op{Verb: kv.VerbDelete, Key: roleNamePfx + old.Name})
		}
		ops = append(ops, kv.Op{Verb: kv.VerbCheckNotExists, Key: roleNamePfx + r.Name},
			kv.Op{Verb: kv.VerbSet, Key: roleNamePfx + r.Name, Value: []byte(r.ID)})
	}
	return append(ops, kv.Op{Verb: kv.VerbSet, Key: rolePrefix + r.ID, Value: v})
}

// RoleCreate stores a new role.
func (s *Store) RoleCreate(ctx context.Context, r *Role) (*Role, error) {
	c := *r
	if c.ID != "" {
		return nil, invalid("Cannot specify an ID in Role Creation; leave ID empty")
	}
	if err := s.checkRole(ctx, &c); err != nil {
		return nil, err
	}
	c.ID = uuid.NewString()
	c.SetHash()
	res, err := s.txn(ctx, roleOps(&c, nil, nil), s.nameTaken("Role", c.Name))
	if err != nil {
		return nil, err
	}
	c.CreateIndex, c.ModifyIndex = indexOf(res, rolePrefix+c.ID)
	return &c, nil
}

// RoleUpdate replaces the role r.ID.
func (s *Store) RoleUpdate(ctx context.Context, r *Role) (*Role, error) {
	c := *r
	if c.ID == "" {
		return nil, invalid("Must specify an ID in Role Update")
	}
	old, e, err := s.roleEntry(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, invalid("Cannot find role %q", c.ID)
	}
	if err := s.checkRole(ctx, &c); err != nil {
		return nil, err
	}
	c.SetHash()
	res, err := s.txn(ctx, roleOps(&c, old, e), s.nameTaken("Role", c.Name))
	if err != nil {
		return nil, err
	}
	_, c.ModifyIndex = indexOf(res, rolePrefix+c.ID)
	c.CreateIndex = e.CreateIndex
	return &c, nil
}

// RoleDelete removes the role id; a missing one is no error.
func (s *Store) RoleDelete(ctx context.Context, id string) error {
	old, _, err := s.roleEntry(ctx, id)
	if err != nil || old == nil {
		return err
	}
	_, err = s.txn(ctx, []kv.Op{{Verb: kv.VerbDelete, Key: rolePrefix + id}, {Verb: kv.VerbDelete, Key: roleNamePfx + old.Name}}, nil)
	return err
}

func (s *Store) roleEntry(ctx context.Context, id string) (*Role, *kv.Entry, error) {
	var r Role
	_, e, err := s.getJSON(ctx, kv.QueryOptions{}, rolePrefix+id, &r)
	if err != nil || e == nil {
		return nil, nil, err
	}
	r.CreateIndex, r.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return &r, e, nil
}

// RoleRead returns the role id (policy names filled in), nil when none.
func (s *Store) RoleRead(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *Role, error) {
	var r Role
	meta, e, err := s.getJSON(ctx, q, rolePrefix+id, &r)
	if err != nil || e == nil {
		return meta, nil, err
	}
	r.CreateIndex, r.ModifyIndex = e.CreateIndex, e.ModifyIndex
	n, err := s.names(ctx)
	if err != nil {
		return meta, nil, err
	}
	r.Policies = n.fillPolicies(r.Policies)
	return meta, &r, nil
}

// RoleReadByName returns the role named name, nil when none.
func (s *Store) RoleReadByName(ctx context.Context, q kv.QueryOptions, name string) (kv.QueryMeta, *Role, error) {
	meta, e, err := s.cfg.KV.Get(ctx, q, roleNamePfx+name)
	if err != nil || e == nil {
		return meta, nil, err
	}
	return s.RoleRead(ctx, q, string(e.Value))
}

// RoleList returns every role by ID; policy "" or a policy ID that the
// roles must link.
func (s *Store) RoleList(ctx context.Context, q kv.QueryOptions, policy string) (kv.QueryMeta, []*Role, error) {
	meta, ents, err := s.cfg.KV.List(ctx, q, rolePrefix)
	if err != nil {
		return meta, nil, err
	}
	var out []*Role
	for _, e := range ents {
		var r Role
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return meta, nil, fmt.Errorf("ACL record at %s is unreadable: %w", e.Key, err)
		}
		r.CreateIndex, r.ModifyIndex = e.CreateIndex, e.ModifyIndex
		if policy != "" && !slices.ContainsFunc(r.Policies, func(l *PolicyLink) bool { return l.ID == policy }) {
			continue
		}
		out = append(out, &r)
	}
	return meta, out, nil
}

// FillRolePolicies sets the current policy names of rs's links.
func (s *Store) FillRolePolicies(ctx context.Context, rs []*Role) error {
	n, err := s.names(ctx)
	if err != nil {
		return err
	}
	for _, r := range rs {
		r.Policies = n.fillPolicies(r.Policies)
	}
	return nil
}
