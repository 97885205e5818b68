// Package aclcli is `cairn acl`: the bootstrap, policy, token and role
// subcommands of `consul acl`, with its flags, its output (pretty or
// -format=json) and its error lines, through the official client.
package aclcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// formatter prints ACL objects as consul's command/acl formatters do.
type formatter struct {
	json     bool
	showMeta bool
}

func (f formatter) out(v any, pretty func(*bytes.Buffer)) string {
	if f.json {
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return fmt.Sprintf("Error formatting as JSON: %v\n", err)
		}
		return string(b) + "\n"
	}
	var b bytes.Buffer
	pretty(&b)
	return b.String()
}

func (f formatter) token(t *api.ACLToken) string {
	return f.out(t, func(b *bytes.Buffer) {
		f.tokenBody(b, "", t.AccessorID, t.SecretID, t.Description, t.Local, t.AuthMethod, t, t.Hash, t.CreateIndex, t.ModifyIndex)
		if t.Rules != "" {
			b.WriteString("Rules:\n" + t.Rules + "\n")
		}
	})
}

func (f formatter) tokenBody(b *bytes.Buffer, in, accessor, secret, desc string, local bool, method string, t *api.ACLToken, hash []byte, ci, mi uint64) {
	fmt.Fprintf(b, "%sAccessorID:       %s\n", in, accessor)
	fmt.Fprintf(b, "%sSecretID:         %s\n", in, secret)
	fmt.Fprintf(b, "%sDescription:      %s\n", in, desc)
	fmt.Fprintf(b, "%sLocal:            %t\n", in, local)
	if method != "" {
		fmt.Fprintf(b, "%sAuth Method:      %s\n", in, method)
	}
	fmt.Fprintf(b, "%sCreate Time:      %v\n", in, t.CreateTime)
	if t.ExpirationTime != nil && !t.ExpirationTime.IsZero() {
		fmt.Fprintf(b, "%sExpiration Time:  %v\n", in, *t.ExpirationTime)
	}
	if f.showMeta {
		fmt.Fprintf(b, "%sHash:             %x\n", in, hash)
		fmt.Fprintf(b, "%sCreate Index:     %d\n", in, ci)
		fmt.Fprintf(b, "%sModify Index:     %d\n", in, mi)
	}
	if len(t.Policies) > 0 {
		fmt.Fprintf(b, "%sPolicies:\n", in)
		for _, p := range t.Policies {
			fmt.Fprintf(b, "%s   %s - %s\n", in, p.ID, p.Name)
		}
	}
	if len(t.Roles) > 0 {
		fmt.Fprintf(b, "%sRoles:\n", in)
		for _, r := range t.Roles {
			fmt.Fprintf(b, "%s   %s - %s\n", in, r.ID, r.Name)
		}
	}
	identities(b, in, t.ServiceIdentities, t.NodeIdentities)
}

func identities(b *bytes.Buffer, in string, svcs []*api.ACLServiceIdentity, nodes []*api.ACLNodeIdentity) {
	if len(svcs) > 0 {
		fmt.Fprintf(b, "%sService Identities:\n", in)
		for _, s := range svcs {
			dcs := "all"
			if len(s.Datacenters) > 0 {
				dcs = strings.Join(s.Datacenters, ", ")
			}
			fmt.Fprintf(b, "%s   %s (Datacenters: %s)\n", in, s.ServiceName, dcs)
		}
	}
	if len(nodes) > 0 {
		fmt.Fprintf(b, "%sNode Identities:\n", in)
		for _, n := range nodes {
			fmt.Fprintf(b, "%s   %s (Datacenter: %s)\n", in, n.NodeName, n.Datacenter)
		}
	}
}

func (f formatter) tokenList(ts []*api.ACLTokenListEntry) string {
	return f.out(ts, func(b *bytes.Buffer) {
		for i, t := range ts {
			if i > 0 {
				b.WriteString("\n")
			}
			full := &api.ACLToken{CreateTime: t.CreateTime, ExpirationTime: t.ExpirationTime, Policies: t.Policies,
				Roles: t.Roles, ServiceIdentities: t.ServiceIdentities, NodeIdentities: t.NodeIdentities}
			f.tokenBody(b, "", t.AccessorID, t.SecretID, t.Description, t.Local, t.AuthMethod, full, t.Hash, t.CreateIndex, t.ModifyIndex)
		}
	})
}

func (f formatter) policy(p *api.ACLPolicy) string {
	return f.out(p, func(b *bytes.Buffer) {
		fmt.Fprintf(b, "ID:           %s\n", p.ID)
		fmt.Fprintf(b, "Name:         %s\n", p.Name)
		fmt.Fprintf(b, "Description:  %s\n", p.Description)
		fmt.Fprintf(b, "Datacenters:  %s\n", strings.Join(p.Datacenters, ", "))
		if f.showMeta {
			fmt.Fprintf(b, "Hash:         %x\n", p.Hash)
			fmt.Fprintf(b, "Create Index: %d\n", p.CreateIndex)
			fmt.Fprintf(b, "Modify Index: %d\n", p.ModifyIndex)
		}
		b.WriteString("Rules:\n")
		b.WriteString(p.Rules)
		b.WriteString("\n")
	})
}

func (f formatter) policyList(ps []*api.ACLPolicyListEntry) string {
	return f.out(ps, func(b *bytes.Buffer) {
		for _, p := range ps {
			fmt.Fprintf(b, "%s:\n", p.Name)
			fmt.Fprintf(b, "   ID:           %s\n", p.ID)
			fmt.Fprintf(b, "   Description:  %s\n", p.Description)
			fmt.Fprintf(b, "   Datacenters:  %s\n", strings.Join(p.Datacenters, ", "))
			if f.showMeta {
				fmt.Fprintf(b, "   Hash:         %x\n", p.Hash)
				fmt.Fprintf(b, "   Create Index: %d\n", p.CreateIndex)
				fmt.Fprintf(b, "   Modify Index: %d\n", p.ModifyIndex)
			}
		}
	})
}

func (f formatter) roleBody(b *bytes.Buffer, in string, r *api.ACLRole) {
	fmt.Fprintf(b, "%sID:           %s\n", in, r.ID)
	if in == "" {
		fmt.Fprintf(b, "Name:         %s\n", r.Name)
	}
	fmt.Fprintf(b, "%sDescription:  %s\n", in, r.Description)
	if f.showMeta {
		fmt.Fprintf(b, "%sHash:         %x\n", in, r.Hash)
		fmt.Fprintf(b, "%sCreate Index: %d\n", in, r.CreateIndex)
		fmt.Fprintf(b, "%sModify Index: %d\n", in, r.ModifyIndex)
	}
	if len(r.Policies) > 0 {
		fmt.Fprintf(b, "%sPolicies:\n", in)
		for _, p := range r.Policies {
			fmt.Fprintf(b, "%s   %s - %s\n", in, p.ID, p.Name)
		}
	}
	identities(b, in, r.ServiceIdentities, r.NodeIdentities)
}

func (f formatter) role(r *api.ACLRole) string {
	return f.out(r, func(b *bytes.Buffer) { f.roleBody(b, "", r) })
}

func (f formatter) roleList(rs []*api.ACLRole) string {
	return f.out(rs, func(b *bytes.Buffer) {
		for _, r := range rs {
			fmt.Fprintf(b, "%s:\n", r.Name)
			f.roleBody(b, "   ", r)
		}
	})
}
