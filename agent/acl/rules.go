package acl

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl"
)

// rule is one named rule block: `key_prefix "foo/" { policy = "read" }`.
type rule struct {
	Name       string `hcl:",key"`
	Policy     string `hcl:"policy"`
	Intentions string `hcl:"intentions"`
}

// ruleFile is Consul's policy rules document, in HCL or JSON.
type ruleFile struct {
	ACL             string  `hcl:"acl"`
	Agents          []*rule `hcl:"agent,expand"`
	AgentPrefixes   []*rule `hcl:"agent_prefix,expand"`
	Keys            []*rule `hcl:"key,expand"`
	KeyPrefixes     []*rule `hcl:"key_prefix,expand"`
	Nodes           []*rule `hcl:"node,expand"`
	NodePrefixes    []*rule `hcl:"node_prefix,expand"`
	Services        []*rule `hcl:"service,expand"`
	ServicePrefixes []*rule `hcl:"service_prefix,expand"`
	Sessions        []*rule `hcl:"session,expand"`
	SessionPrefixes []*rule `hcl:"session_prefix,expand"`
	Events          []*rule `hcl:"event,expand"`
	EventPrefixes   []*rule `hcl:"event_prefix,expand"`
	Queries         []*rule `hcl:"query,expand"`
	QueryPrefixes   []*rule `hcl:"query_prefix,expand"`
	Keyring         string  `hcl:"keyring"`
	Operator        string  `hcl:"operator"`
	Mesh            string  `hcl:"mesh"`
	Peering         string  `hcl:"peering"`
}

// Rule is one parsed rule: Access on Resource for Name (Prefix: every
// name starting with Name).
type Rule struct {
	Resource Resource
	Name     string
	Prefix   bool
	Access   Access
}

// ParseRules parses Consul's rules (HCL or JSON). Errors name the rule
// and the accepted values.
func ParseRules(src string) ([]Rule, error) {
	var f ruleFile
	if strings.TrimSpace(src) != "" {
		if err := hcl.Decode(&f, src); err != nil {
			return nil, fmt.Errorf("Failed to parse ACL rules: %v", err)
		}
	}
	var out []Rule
	blocks := []struct {
		res    Resource
		prefix bool
		key    string
		rules  []*rule
	}{
		{Agent, false, "agent", f.Agents}, {Agent, true, "agent_prefix", f.AgentPrefixes},
		{Key, false, "key", f.Keys}, {Key, true, "key_prefix", f.KeyPrefixes},
		{Node, false, "node", f.Nodes}, {Node, true, "node_prefix", f.NodePrefixes},
		{Service, false, "service", f.Services}, {Service, true, "service_prefix", f.ServicePrefixes},
		{Session, false, "session", f.Sessions}, {Session, true, "session_prefix", f.SessionPrefixes},
		{Event, false, "event", f.Events}, {Event, true, "event_prefix", f.EventPrefixes},
		{Query, false, "query", f.Queries}, {Query, true, "query_prefix", f.QueryPrefixes},
	}
	for _, b := range blocks {
		for _, r := range b.rules {
			a, err := parseAccess(r.Policy, b.res == Key)
			if err != nil {
				return nil, fmt.Errorf("Invalid %s policy %q for %q: %v", b.key, r.Policy, r.Name, err)
			}
			if r.Intentions != "" {
				if _, err := parseAccess(r.Intentions, false); err != nil {
					return nil, fmt.Errorf("Invalid %s intentions %q for %q: %v", b.key, r.Intentions, r.Name, err)
				}
			}
			out = append(out, Rule{Resource: b.res, Name: r.Name, Prefix: b.prefix, Access: a})
		}
	}
	for _, s := range []struct {
		res Resource
		v   string
	}{{ACL, f.ACL}, {Keyring, f.Keyring}, {Operator, f.Operator}, {Mesh, f.Mesh}, {"peering", f.Peering}} {
		if s.v == "" {
			continue
		}
		a, err := parseAccess(s.v, false)
		if err != nil {
			return nil, fmt.Errorf("Invalid %s policy %q: %v", s.res, s.v, err)
		}
		out = append(out, Rule{Resource: s.res, Prefix: true, Access: a})
	}
	return out, nil
}

func parseAccess(s string, listOK bool) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "deny":
		return Deny, nil
	case "list":
		if listOK {
			return List, nil
		}
		return Unset, fmt.Errorf("\"list\" applies to key and key_prefix only; use read, write or deny")
	case "":
		return Unset, fmt.Errorf("the policy is missing; give policy = \"read\", \"write\" or \"deny\"")
	}
	return Unset, fmt.Errorf("use read, write, deny (or list for keys)")
}

// String is the access level as rules spell it.
func (a Access) String() string {
	switch a {
	case Deny:
		return "deny"
	case Read:
		return "read"
	case List:
		return "list"
	case Write:
		return "write"
	}
	return "unset"
}
