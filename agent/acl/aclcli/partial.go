package aclcli

import (
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/acl"
)

// IDs on the command line may be shortened, as consul's take them: a
// whole UUID (36 characters) is used as given, anything shorter must be
// the start of exactly one ID of its kind. "anonymous" names the
// anonymous token and "global-management" the builtin policy.

// wholeID is the length of a UUID written out.
const wholeID = 36

// uniquePrefix returns the one ID of ids that starts with partial.
func uniquePrefix(kind, partial string, ids []string) (string, error) {
	var found []string
	for _, id := range ids {
		if strings.HasPrefix(id, partial) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("No such %s ID with prefix: %s", kind, partial)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("Partial %s ID is not unique: %q is the start of %s; give more of it", kind, partial, strings.Join(found, ", "))
}

// resolveID returns partial when it is a whole ID, else the one ID of
// those list returns that starts with it.
func resolveID(kind, partial string, list func() ([]string, error)) (string, error) {
	if len(partial) == wholeID {
		return partial, nil
	}
	ids, err := list()
	if err != nil {
		return "", err
	}
	return uniquePrefix(kind, partial, ids)
}

// idsOf maps xs to their IDs.
func idsOf[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

// tokenID resolves a token's AccessorID from what -accessor-id gave.
func (c *cmd) tokenID(partial string) (string, error) {
	if partial == "anonymous" {
		return acl.AnonymousAccessorID, nil
	}
	return resolveID("token", partial, func() ([]string, error) {
		ts, _, err := c.client.ACL().TokenList(nil)
		return idsOf(ts, func(t *api.ACLTokenListEntry) string { return t.AccessorID }), err
	})
}

// policyID resolves a policy's ID from what -id or -policy-id gave.
func (c *cmd) policyID(partial string) (string, error) {
	if partial == acl.GlobalManagementName {
		return acl.GlobalManagementID, nil
	}
	return resolveID("policy", partial, func() ([]string, error) {
		ps, _, err := c.client.ACL().PolicyList(nil)
		return idsOf(ps, func(p *api.ACLPolicyListEntry) string { return p.ID }), err
	})
}

// roleID resolves a role's ID from what -id or -role-id gave.
func (c *cmd) roleID(partial string) (string, error) {
	return resolveID("role", partial, func() ([]string, error) {
		rs, _, err := c.client.ACL().RoleList(nil)
		return idsOf(rs, func(r *api.ACLRole) string { return r.ID }), err
	})
}

// links resolves the -policy-id and -role-id flags and returns every
// policy and role link l names.
func (c *cmd) links(l *linkFlags) ([]*api.ACLTokenPolicyLink, []*api.ACLTokenRoleLink, error) {
	var pols []*api.ACLTokenPolicyLink
	for _, p := range l.policyIDs {
		id, err := c.policyID(p)
		if err != nil {
			return nil, nil, fmt.Errorf("Error resolving policy ID %s: %v", p, err)
		}
		pols = append(pols, &api.ACLTokenPolicyLink{ID: id})
	}
	for _, n := range l.policyNames {
		pols = append(pols, &api.ACLTokenPolicyLink{Name: n})
	}
	var roles []*api.ACLTokenRoleLink
	for _, r := range l.roleIDs {
		id, err := c.roleID(r)
		if err != nil {
			return nil, nil, fmt.Errorf("Error resolving role ID %s: %v", r, err)
		}
		roles = append(roles, &api.ACLTokenRoleLink{ID: id})
	}
	for _, n := range l.roleNames {
		roles = append(roles, &api.ACLTokenRoleLink{Name: n})
	}
	return pols, roles, nil
}
