package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/consul/api"
)

// command is what every subcommand that calls the HTTP API shares: its
// streams and consul's HTTP client flags (consul's command/flags
// HTTPFlags), so that -http-addr, CONSUL_HTTP_ADDR and the rest work as
// they do for the consul commands.
type command struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	// Consul's HTTP client flags.
	httpAddr   string
	token      string
	datacenter string
	stale      bool

	// Consul's TLS client flags; unset ones keep CONSUL_CACERT,
	// CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and
	// CONSUL_TLS_SERVER_NAME (read by api.DefaultConfig, as consul does).
	caFile, caPath, clientCert, clientKey, tlsServerName string
}

func (c *command) info(format string, a ...any)  { fmt.Fprintf(c.stdout, format+"\n", a...) }
func (c *command) error(format string, a ...any) { fmt.Fprintf(c.stderr, format+"\n", a...) }

// bareFlagSet returns a flag set named name (e.g. "cairn keygen") that
// reports to stderr and whose -h prints help.
func (c *command) bareFlagSet(name, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), strings.TrimLeft(help, "\n"))
		if hasFlags(fs) {
			fmt.Fprint(fs.Output(), "\nOptions:\n\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagSet is bareFlagSet with consul's client flags (-http-addr, -token)
// and, for commands that read from the servers, its server flags
// (-datacenter, -stale).
func (c *command) flagSet(name, help string, server bool) *flag.FlagSet {
	fs := c.bareFlagSet(name, help)
	fs.StringVar(&c.httpAddr, "http-addr", "", "Address of the agent's HTTP API, with an optional scheme (http://, https://, unix://). Default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500.")
	fs.StringVar(&c.token, "token", "", "ACL token for the request. Default: CONSUL_HTTP_TOKEN.")
	fs.StringVar(&c.caFile, "ca-file", "", "CA file to verify the agent's HTTPS certificate with. Default: CONSUL_CACERT.")
	fs.StringVar(&c.caPath, "ca-path", "", "Directory of CA files to verify the agent's HTTPS certificate with. Default: CONSUL_CAPATH.")
	fs.StringVar(&c.clientCert, "client-cert", "", "Client certificate for HTTPS with verify_incoming. Default: CONSUL_CLIENT_CERT.")
	fs.StringVar(&c.clientKey, "client-key", "", "Key of -client-cert. Default: CONSUL_CLIENT_KEY.")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "Name to check the agent's certificate against (SNI). Default: CONSUL_TLS_SERVER_NAME.")
	if server {
		fs.StringVar(&c.datacenter, "datacenter", "", "Datacenter to query. Default: the agent's.")
		fs.BoolVar(&c.stale, "stale", false, "Let any server answer reads, even one that is not the leader.")
	}
	return fs
}

// client builds the Consul API client, environment first, flags over it.
func (c *command) client() (*api.Client, bool) {
	cfg := api.DefaultConfig()
	if c.httpAddr != "" {
		cfg.Address = c.httpAddr
	}
	if c.token != "" {
		cfg.Token = c.token
	}
	if c.datacenter != "" {
		cfg.Datacenter = c.datacenter
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&cfg.TLSConfig.CAFile, c.caFile}, {&cfg.TLSConfig.CAPath, c.caPath},
		{&cfg.TLSConfig.CertFile, c.clientCert}, {&cfg.TLSConfig.KeyFile, c.clientKey},
		{&cfg.TLSConfig.Address, c.tlsServerName},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		c.error("Error connecting to cairn agent: %s", err)
		return nil, false
	}
	return client, true
}

// noArgs refuses positional arguments to a command that takes none, the
// way `consul leave` does.
func (c *command) noArgs(fs *flag.FlagSet) bool {
	if fs.NArg() == 0 {
		return true
	}
	c.error("Error found unexpected args: %v", fs.Args())
	fs.Usage()
	return false
}

// connect parses the flags of a command that takes no arguments and
// builds its client; a nil client means the command ends with code (0
// for -h; the problem has been printed).
func (c *command) connect(fs *flag.FlagSet, args []string) (*api.Client, int) {
	if err := fs.Parse(args); err != nil {
		return nil, flagExit(err)
	}
	if !c.noArgs(fs) {
		return nil, 1
	}
	client, ok := c.client()
	if !ok {
		return nil, 1
	}
	return client, 0
}

// flagExit is the exit code for a flag parse error: 0 for -h, else 1
// (the flag package has already printed the problem and the usage).
func flagExit(err error) int {
	if err == flag.ErrHelp {
		return 0
	}
	return 1
}
