package main

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// apiMember is a member as the API reports it, with a Consul agent's
// tags for role ("consul", "node", or "" for none).
func apiMember(name, addr string, port uint16, status int, role, dc, build string) *api.AgentMember {
	tags := map[string]string{"dc": dc, "id": name + "-id", "vsn": "2", "vsn_min": "2", "vsn_max": "3", "segment": ""}
	if role != "" {
		tags["role"] = role
	}
	if role == "consul" {
		tags["port"] = "8300"
	}
	if build != "" {
		tags["build"] = build
	}
	return &api.AgentMember{Name: name, Addr: addr, Port: port, Tags: tags, Status: status}
}

// TestMembersTable pins `cairn members` tables: servers first, then by
// name; addresses with ports (IPv6 bracketed); the build before ':'.
func TestMembersTable(t *testing.T) {
	members := []*api.AgentMember{ // deliberately unsorted
		apiMember("web-2", "10.0.0.12", 8301, 3, "node", "dc1", "0.1.0:abc123"),
		apiMember("web-1", "10.0.0.11", 8301, 1, "node", "dc1", "0.1.0:abc123"),
		apiMember("server-b", "fd00::2", 8301, 4, "consul", "dc1", "0.1.0:abc123"),
		apiMember("server-a", "10.0.0.1", 8301, 1, "consul", "dc1", "0.1.0:abc123"),
		apiMember("old", "10.0.0.30", 8301, 2, "node", "dc1", ""),
		apiMember("bare-build", "10.0.0.31", 8301, 1, "node", "dc2", "0.2.0"),
		apiMember("stranger", "10.0.0.40", 7946, 1, "", "", ""),
		apiMember("odd-status", "10.0.0.41", 8301, 9, "node", "dc1", "0.1.0:abc123"),
	}
	tests := []struct {
		name     string
		members  []*api.AgentMember
		detailed bool
	}{
		{"members", members, false},
		{"members_detailed", members, true},
		{"members_one", members[1:2], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, tt.name, membersTable(tt.members, tt.detailed))
		})
	}
}

func TestMemberStatus(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{0, "none"}, {1, "alive"}, {2, "leaving"}, {3, "left"}, {4, "failed"}, {5, "unknown(5)"}, {-1, "unknown(-1)"},
	}
	for _, tt := range tests {
		if got := memberStatus(tt.code); got != tt.want {
			t.Errorf("memberStatus(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}
