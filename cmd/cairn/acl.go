package main

import (
	"io"

	"github.com/cairn-dev/cairn/agent/acl/aclcli"
	"github.com/hashicorp/consul/api"
)

// runACL is `cairn acl`, as `consul acl` (agent/acl/aclcli).
func runACL(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return aclcli.Run(args, aclcli.Env{Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Client: func(addr, token string) (*api.Client, error) {
			cfg := api.DefaultConfig()
			if addr != "" {
				cfg.Address = addr
			}
			if token != "" {
				cfg.Token = token
			}
			return api.NewClient(cfg)
		}})
}
