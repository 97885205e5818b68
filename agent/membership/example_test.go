package membership_test

import (
	"fmt"

	"github.com/cairn-dev/cairn/agent/membership"
)

// Two agents on one machine: a server and a client that joins it.
func Example() {
	start := func(name string, role membership.Role, raftAddr string) *membership.Membership {
		cfg := membership.DefaultConfig()
		cfg.NodeName = name
		cfg.BindAddr, cfg.BindPort = "127.0.0.1", 0 // the kernel picks a port
		cfg.Meta.Role, cfg.Meta.RaftAddr = role, raftAddr
		cfg.Fast = true
		m, err := membership.New(cfg)
		if err != nil {
			panic(err)
		}
		return m
	}
	server := start("server-1", membership.RoleServer, "127.0.0.1:8300")
	defer server.Shutdown()
	client := start("client-1", membership.RoleClient, "")
	defer client.Shutdown()

	// Join returns once the two have exchanged member lists.
	if _, err := client.Join([]string{server.LocalMember().AddrPort().String()}); err != nil {
		panic(err)
	}
	_, members := client.Members(nil)
	for _, m := range members {
		fmt.Println(m.Name, m.Status, m.Meta.Role)
	}
	for _, s := range client.Servers() {
		fmt.Println("server:", s.Name, "raft:", s.Meta.RaftAddr)
	}
	// Output:
	// client-1 alive client
	// server-1 alive server
	// server: server-1 raft: 127.0.0.1:8300
}
