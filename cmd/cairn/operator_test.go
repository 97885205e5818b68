package main

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestPeersTable pins `cairn operator raft list-peers` tables.
func TestPeersTable(t *testing.T) {
	tests := []struct {
		name string
		cfg  *api.RaftConfiguration
	}{
		{"peers", &api.RaftConfiguration{Index: 42, Servers: []*api.RaftServer{
			{ID: "11111111-1111-1111-1111-111111111111", Node: "server-1", Address: "10.0.0.1:8300", Leader: true, Voter: true, ProtocolVersion: "3"},
			{ID: "22222222-2222-2222-2222-222222222222", Node: "server-2", Address: "10.0.0.2:8300", Voter: true, ProtocolVersion: "3"},
			{ID: "33333333-3333-3333-3333-333333333333", Node: "server-three", Address: "[fd00::3]:8300", Voter: false, ProtocolVersion: "3"},
			{ID: "10.0.0.4:8300", Node: "(unknown)", Address: "10.0.0.4:8300", Voter: true},
		}}},
		{"peers_empty", &api.RaftConfiguration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, tt.name, peersTable(tt.cfg))
		})
	}
}
