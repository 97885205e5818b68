package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// `cairn members` is `consul members` (command/members in
// hashicorp/consul): the same flags, table and exit codes, without the
// Enterprise partition and segment columns and without -wan (cairn has
// no WAN pool).

const membersHelp = `
Usage: cairn members [options]

  Lists the members of the cluster the agent knows of, with their gossip
  status: alive, leaving, left or failed. Exits 2 when no member matches
  -status.
`

func runMembers(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn members", membersHelp, false)
	detailed := fs.Bool("detailed", false, "Show each member's tags instead of the summary columns.")
	status := fs.String("status", ".*", "Show only the members whose status (alive, leaving, left, failed) matches this regular expression.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	statusRe, err := regexp.Compile(*status)
	if err != nil {
		c.error("Failed to compile status regexp: %v", err)
		return 1
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	members, err := client.Agent().Members(false)
	if err != nil {
		c.error("Error retrieving members: %s", err)
		return 1
	}
	members = slices.DeleteFunc(members, func(m *api.AgentMember) bool {
		return !statusRe.MatchString(memberStatus(m.Status))
	})
	if len(members) == 0 {
		return 2 // as consul: nothing matched
	}
	fmt.Fprint(stdout, membersTable(members, *detailed))
	return 0
}

// memberStatus is serf's name for a member status code
// (api.AgentMember.Status, serf.MemberStatus).
func memberStatus(s int) string {
	names := []string{"none", "alive", "leaving", "left", "failed"}
	if s >= 0 && s < len(names) {
		return names[s]
	}
	return "unknown(" + strconv.Itoa(s) + ")"
}

// membersTable is consul members' table: servers first, then by name.
// detailed shows the tags (k=v, sorted by key) instead of the role, build,
// protocol and datacenter columns.
func membersTable(members []*api.AgentMember, detailed bool) string {
	members = slices.Clone(members)
	slices.SortStableFunc(members, func(a, b *api.AgentMember) int {
		as, bs := a.Tags[api.MemberTagKeyRole] == api.MemberTagValueRoleServer, b.Tags[api.MemberTagKeyRole] == api.MemberTagValueRoleServer
		if as != bs {
			if as {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	var rows [][]string
	if detailed {
		rows = append(rows, []string{"Node", "Address", "Status", "Tags"})
	} else {
		rows = append(rows, []string{"Node", "Address", "Status", "Type", "Build", "Protocol", "DC"})
	}
	for _, m := range members {
		addr := net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
		status := memberStatus(m.Status)
		if detailed {
			keys := slices.Sorted(maps.Keys(m.Tags))
			pairs := make([]string, len(keys))
			for i, k := range keys {
				pairs[i] = k + "=" + m.Tags[k]
			}
			rows = append(rows, []string{m.Name, addr, status, strings.Join(pairs, ",")})
			continue
		}
		var typ string
		switch m.Tags[api.MemberTagKeyRole] {
		case api.MemberTagValueRoleServer:
			typ = "server"
		case api.MemberTagValueRoleClient:
			typ = "client"
		default: // not a Consul agent: consul leaves the rest blank
			rows = append(rows, []string{m.Name, addr, status, "unknown", "", "", ""})
			continue
		}
		build, _, _ := strings.Cut(m.Tags["build"], ":") // "version:revision"
		if build == "" {
			build = "< 0.3" // consul's words for a member without the tag
		}
		rows = append(rows, []string{m.Name, addr, status, typ, build, m.Tags["vsn"], m.Tags[api.MemberTagKeyDatacenter]})
	}
	return table(rows)
}
