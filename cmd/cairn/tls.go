package main

import (
	"flag"
	"io"
	"net"
	"strings"

	"github.com/cairn-dev/cairn/agent/tlsconfig"
)

// `cairn tls` is `consul tls`: a CA and agent certificates, with
// consul's file names, for the tls { } settings (see docs/tls.md). The
// work is agent/tlsconfig's.

const tlsHelp = `
Usage: cairn tls <subcommand> [options]

  Creates a certificate authority and agent certificates, as "consul tls":

    cairn tls ca create
    cairn tls cert create -server -dc dc1
    cairn tls cert create -client

Subcommands:

    ca      Creates a certificate authority
    cert    Creates agent certificates
`

const tlsCAHelp = `
Usage: cairn tls ca create [options]

  Creates a CA (ECDSA P-256) in the current directory:
  <domain>-agent-ca.pem and <domain>-agent-ca-key.pem.
`

const tlsCertHelp = `
Usage: cairn tls cert create [options]

  Creates a certificate signed by the CA, in the current directory:
  <dc>-<server|client|cli>-<domain>-<n>.pem and its -key.pem, n the first
  free number. Server certificates are valid for server.<dc>.<domain>
  (what verify_server_hostname checks), localhost and 127.0.0.1.
`

func runTLS(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			c.info("%s", strings.TrimSpace(tlsHelp))
			return 0
		}
		c.error("%s", strings.TrimSpace(tlsHelp))
		return 1
	}
	if args[0] == "ca" {
		return c.tlsCA(args[2:])
	}
	return c.tlsCert(args[2:])
}

func (c *command) tlsCA(args []string) int {
	fs := c.bareFlagSet("cairn tls ca create", tlsCAHelp)
	var r tlsconfig.CARequest
	fs.IntVar(&r.Days, "days", 1825, "Days the CA is valid for.")
	fs.StringVar(&r.Domain, "domain", "consul", "Domain of the cluster; names the files.")
	fs.StringVar(&r.CommonName, "common-name", "", "Common name of the CA. Default: Consul Agent CA <serial>.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	files, err := tlsconfig.WriteCA(".", r)
	if err != nil {
		c.error("==> Error: %s", err)
		return 1
	}
	for _, f := range files {
		c.info("==> Saved %s", f)
	}
	return 0
}

// namesFlag is a repeatable string flag (-additional-dnsname a -additional-dnsname b).
type namesFlag []string

func (l *namesFlag) String() string     { return strings.Join(*l, ",") }
func (l *namesFlag) Set(v string) error { *l = append(*l, v); return nil }

func (c *command) tlsCert(args []string) int {
	fs := c.bareFlagSet("cairn tls cert create", tlsCertHelp)
	var (
		r                   tlsconfig.CertRequest
		server, client, cli bool
		caFile, keyFile     string
		dnsNames, ipAddrs   namesFlag
	)
	fs.BoolVar(&server, "server", false, "Create a server certificate.")
	fs.BoolVar(&client, "client", false, "Create a client certificate.")
	fs.BoolVar(&cli, "cli", false, "Create a certificate for the CLI (HTTPS with verify_incoming).")
	fs.StringVar(&r.Datacenter, "dc", "dc1", "Datacenter of the agent.")
	fs.StringVar(&r.Domain, "domain", "consul", "Domain of the cluster.")
	fs.StringVar(&r.Node, "node", "", "Node name of a server: adds <node>.server.<dc>.<domain>.")
	fs.IntVar(&r.Days, "days", 365, "Days the certificate is valid for.")
	fs.StringVar(&caFile, "ca", "#DOMAIN#-agent-ca.pem", "The CA certificate.")
	fs.StringVar(&keyFile, "key", "#DOMAIN#-agent-ca-key.pem", "The CA key.")
	fs.Var(&dnsNames, "additional-dnsname", "Another DNS name the certificate is valid for (repeatable).")
	fs.Var(&ipAddrs, "additional-ipaddress", "Another IP address the certificate is valid for (repeatable).")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	n := 0
	for _, b := range []bool{server, client, cli} {
		if b {
			n++
		}
	}
	if n != 1 {
		c.error("==> Error: give exactly one of -server, -client or -cli")
		return 1
	}
	switch {
	case server:
		r.Kind = tlsconfig.KindServer
	case client:
		r.Kind = tlsconfig.KindClient
	default:
		r.Kind = tlsconfig.KindCLI
	}
	r.DNSNames = dnsNames
	for _, s := range ipAddrs {
		ip := net.ParseIP(s)
		if ip == nil {
			c.error("==> Error: -additional-ipaddress %q is not an IP address", s)
			return 1
		}
		r.IPs = append(r.IPs, ip)
	}
	caFile = strings.ReplaceAll(caFile, "#DOMAIN#", r.Domain)
	keyFile = strings.ReplaceAll(keyFile, "#DOMAIN#", r.Domain)
	if server {
		c.info(`==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.`)
	}
	c.info("==> Using %s and %s", caFile, keyFile)
	files, err := tlsconfig.WriteCert(".", caFile, keyFile, r)
	if err != nil {
		c.error("==> Error: %s", err)
		return 1
	}
	for _, f := range files {
		c.info("==> Saved %s", f)
	}
	return 0
}

var _ flag.Value = (*namesFlag)(nil)
