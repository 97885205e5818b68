package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/cairn-dev/cairn/agent"
	"github.com/cairn-dev/cairn/agent/logging"
)

// runAgent is `cairn agent`: it runs until SIGINT or SIGTERM, then stops
// gracefully and exits 0. A second signal kills at once.
func runAgent(args []string, stderr io.Writer) int {
	cfg, err := loadAgentConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cairn agent: %v\n", err)
		return 1
	}
	level, err := agent.ParseLogLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "cairn agent: %v\n", err)
		return 1
	}
	// Consul's line format (or its JSON form), which cairn monitor
	// streams too.
	logger := logging.New(stderr, level, cfg.LogJSON).Logger()
	// Reload re-reads the same flags and files.
	cfg.ReloadConfig = func() (agent.Config, error) { return loadAgentConfig(args, io.Discard) }
	a, err := agent.New(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "cairn agent: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling so that a
	// second one kills a stop that hangs.
	context.AfterFunc(ctx, stop)

	// SIGHUP reloads, as it does Consul.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var reloads sync.WaitGroup
	defer func() { stop(); reloads.Wait() }() // stop ends the reload loop
	reloads.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := a.Reload(ctx); err != nil {
					logger.Error("reload on SIGHUP failed", "err", err)
				}
			}
		}
	})

	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "cairn agent: %v\n", err)
		return 1
	}
	return 0
}

// configSource is one -config-file or -config-dir, in command-line order.
type configSource struct {
	path string
	dir  bool
}

// loadAgentConfig builds the agent's Config: defaults, then the config
// files and dirs in the order given, then every other flag, wherever it
// stands on the command line (Consul's precedence). Flags that take a
// list (-join, -retry-join, -recursor) add to the lists of the files.
func loadAgentConfig(args []string, stderr io.Writer) (agent.Config, error) {
	// First pass: find the config files; the values go to a scratch copy.
	var sources []configSource
	scratch := agent.DefaultConfig()
	fs := agentFlags(&scratch, &sources)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return agent.Config{}, err
	}
	if fs.NArg() > 0 {
		return agent.Config{}, fmt.Errorf("unexpected argument %q; cairn agent takes only flags (see cairn agent -h)", fs.Arg(0))
	}

	cfg := agent.DefaultConfig()
	for _, src := range sources {
		var err error
		if src.dir {
			err = agent.LoadConfigDir(&cfg, src.path)
		} else {
			err = agent.LoadConfigFile(&cfg, src.path)
		}
		if err != nil {
			return agent.Config{}, err
		}
	}

	// Second pass: the same flags, now onto the loaded configuration.
	// Only flags given on the command line are set, so they override the
	// files and leave the rest alone.
	var ignored []configSource
	fs = agentFlags(&cfg, &ignored)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return agent.Config{}, err
	}
	return cfg, nil
}

// agentFlags declares `cairn agent`'s flags, Consul's names, onto c.
func agentFlags(c *agent.Config, sources *[]configSource) *flag.FlagSet {
	fs := flag.NewFlagSet("cairn agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: cairn agent [options]\n\n  Starts a cairn agent and runs until interrupted (SIGINT or SIGTERM stop it\n  gracefully). Try: cairn agent -dev\n\nOptions:\n\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&c.Dev, "dev", c.Dev, "Development mode: one server, a temporary data dir removed on exit, everything on 127.0.0.1.")
	fs.BoolVar(&c.Server, "server", c.Server, "Run as a server: keep the Raft log and vote.")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", c.BootstrapExpect, "Servers to wait for before the first leader election (1, 3 or 5); 0 on a server joins an existing Raft group.")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "Directory for the node ID and the Raft state. Required unless -dev.")
	fs.StringVar(&c.NodeName, "node", c.NodeName, "Node name; the host name by default.")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "Node UUID; by default generated once and kept in <data-dir>/node-id.")
	fs.StringVar(&c.Datacenter, "datacenter", c.Datacenter, "Datacenter name.")
	fs.StringVar(&c.BindAddr, "bind", c.BindAddr, "IP for cluster traffic (server RPC, gossip); 0.0.0.0 by default, 127.0.0.1 with -dev.")
	fs.StringVar(&c.AdvertiseAddr, "advertise", c.AdvertiseAddr, "IP other nodes reach this one on; by default -bind, or the private IPv4 address.")
	fs.StringVar(&c.ClientAddr, "client", c.ClientAddr, "IP for the HTTP API and DNS.")
	fs.IntVar(&c.Ports.HTTP, "http-port", c.Ports.HTTP, "HTTP API port (-1 turns it off).")
	fs.IntVar(&c.Ports.HTTPS, "https-port", c.Ports.HTTPS, "HTTPS API port (-1, the default, turns it off; needs tls cert_file and key_file).")
	fs.IntVar(&c.Ports.DNS, "dns-port", c.Ports.DNS, "DNS port (-1 turns it off).")
	fs.IntVar(&c.Ports.SerfLAN, "serf-lan-port", c.Ports.SerfLAN, "LAN gossip port.")
	fs.IntVar(&c.Ports.Server, "server-port", c.Ports.Server, "Server RPC (Raft) port.")
	fs.Var(listFlag{&c.Join}, "join", "Address of an agent to join at start; repeatable. The agent stops if it cannot reach one.")
	fs.Var(listFlag{&c.RetryJoin}, "retry-join", "Address of an agent to join, retried in the background until one answers; repeatable.")
	fs.StringVar(&c.Encrypt, "encrypt", c.Encrypt, "Base64 gossip encryption key (16, 24 or 32 bytes).")
	fs.StringVar(&c.Domain, "domain", c.Domain, "DNS domain the agent answers for.")
	fs.DurationVar(&c.DNS.ServiceTTL, "dns-ttl", c.DNS.ServiceTTL, "TTL of service records in DNS answers (0 by default, as Swarm's DNS: clients always ask again); dns_config.service_ttl.")
	fs.DurationVar(&c.DNS.NodeTTL, "dns-node-ttl", c.DNS.NodeTTL, "TTL of node records in DNS answers; dns_config.node_ttl.")
	fs.DurationVar(&c.ReconnectTimeout, "reconnect-timeout", c.ReconnectTimeout, "How long a failed member stays (its services answered as critical) before it is purged, and a failed server stays a Raft voter.")
	fs.DurationVar(&c.RPCHoldTimeout, "rpc-hold-timeout", c.RPCHoldTimeout, "How long a KV or session request waits for a leader (during an election, or when a server stops answering) before it fails; performance.rpc_hold_timeout.")
	fs.StringVar(&c.AltDomain, "alt-domain", c.AltDomain, `Second DNS domain answering the same names, for clients written for Consul; "" turns it off.`)
	fs.Var(listFlag{&c.Recursors}, "recursor", "DNS server (IP or IP:port) for names outside -domain; repeatable.")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "Log level: trace, debug, info, warn or err.")
	fs.BoolVar(&c.LogJSON, "log-json", c.LogJSON, "Write the log as JSON lines (hclog's @timestamp, @level, @message).")
	fs.BoolVar(&c.DisableMetrics, "disable-metrics", c.DisableMetrics, "Record no metrics; /v1/agent/metrics answers 501.")
	fs.BoolVar(&c.Docker, "docker", c.Docker, "Register this host's Docker containers and Swarm tasks as services, by registrator's rules and SERVICE_* labels ($DOCKER_HOST, else unix:///var/run/docker.sock).")
	dockerFlags(fs, c)
	fs.Var(metaFlag{&c.NodeMeta}, "node-meta", `Node meta "key:value" for this node's catalog entry; repeatable.`)
	fs.BoolVar(&c.EnableLocalScriptChecks, "enable-local-script-checks", c.EnableLocalScriptChecks, "Allow script checks defined in config files (not over the HTTP API).")
	fs.BoolVar(&c.EnableScriptChecks, "enable-script-checks", c.EnableScriptChecks, "Allow health checks that run a program (ScriptArgs); off by default.")
	fs.Var(listFlag{&c.Templates}, "template", `Template to render in-process from this agent's catalog and KV, "source[:destination[:command]]" (as cairn template); repeatable.`)
	fs.StringVar(&c.TemplateCheck, "template-check", c.TemplateCheck, `Command that validates each result of the -template templates before it stays (e.g. "nginx -t"); $CAIRN_TEMPLATE_FILE names the destination.`)
	fs.StringVar(&c.TemplateWait, "template-wait", c.TemplateWait, `Template quiescence "min:max" (or "min", max = 4*min): render after min without changes, at the latest max after the first.`)
	fs.Var(listFlag{&c.TemplateConfigs}, "template-config", "consul-template config file (HCL or JSON) whose template {} blocks are rendered in-process; repeatable.")
	fs.StringVar(&c.VIPCIDR, "vip-cidr", c.VIPCIDR, "Range service VIPs come from, e.g. 10.200.0.0/16 (the same on every agent); unset: no VIPs, <service>.<domain> answers the instances.")
	fs.StringVar(&c.VIPDataplane, "vip-dataplane", c.VIPDataplane, "How this host balances VIPs: auto (the default with -vip-cidr: ipvs, else nftables, else none), ipvs, nftables, or none (DNS and HTTP only; removes rules an earlier run left).")
	fs.StringVar(&c.VIPScheduler, "vip-scheduler", c.VIPScheduler, "IPVS scheduler of the VIPs (rr, wrr, lc, wlc, sh, mh, ...).")
	fs.Var(sourceFlag{sources, false}, "config-file", "Config file (HCL or JSON, Consul's keys); repeatable, later files win, flags win over files.")
	fs.Var(sourceFlag{sources, true}, "config-dir", "Directory whose *.hcl and *.json files are read in lexical order; repeatable.")
	return fs
}

// listFlag appends every use of a repeatable flag to a list.
type listFlag struct{ list *[]string }

func (f listFlag) String() string {
	if f.list == nil {
		return ""
	}
	return strings.Join(*f.list, ",")
}

func (f listFlag) Set(v string) error {
	*f.list = append(*f.list, v)
	return nil
}

// sourceFlag records -config-file and -config-dir in command-line order.
type sourceFlag struct {
	list *[]configSource
	dir  bool
}

func (f sourceFlag) String() string { return "" }

func (f sourceFlag) Set(v string) error {
	*f.list = append(*f.list, configSource{path: v, dir: f.dir})
	return nil
}

// metaFlag adds each "key:value" of a repeatable flag to a map, as
// Consul's -node-meta does.
type metaFlag struct{ m *map[string]string }

func (f metaFlag) String() string { return "" }

func (f metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key:value; give the node meta as -node-meta key:value", v)
	}
	if *f.m == nil {
		*f.m = map[string]string{}
	}
	(*f.m)[k] = val
	return nil
}
