package agent

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/cairn-dev/cairn/agent/tlsconfig"
	"github.com/cairn-dev/cairn/kv"
)

// fileConfig is the part of Consul's agent configuration file that cairn
// reads: the same keys, in HCL or JSON. Pointers tell "not set" from a
// zero value, so a file only overrides what it names.
type fileConfig struct {
	NodeName        *string           `hcl:"node_name"`
	NodeID          *string           `hcl:"node_id"`
	Datacenter      *string           `hcl:"datacenter"`
	DataDir         *string           `hcl:"data_dir"`
	Server          *bool             `hcl:"server"`
	BootstrapExpect *int              `hcl:"bootstrap_expect"`
	BindAddr        *string           `hcl:"bind_addr"`
	AdvertiseAddr   *string           `hcl:"advertise_addr"`
	ClientAddr      *string           `hcl:"client_addr"`
	Ports           *filePorts        `hcl:"ports"`
	StartJoin       []string          `hcl:"start_join"`
	RetryJoin       []string          `hcl:"retry_join"`
	Encrypt         *string           `hcl:"encrypt"`
	Domain          *string           `hcl:"domain"`
	AltDomain       *string           `hcl:"alt_domain"`
	DNSConfig       *fileDNS          `hcl:"dns_config"`
	Recursors       []string          `hcl:"recursors"`
	LogLevel        *string           `hcl:"log_level"`
	LeaveOnTerm     *bool             `hcl:"leave_on_terminate"`
	ScriptChecks    *bool             `hcl:"enable_script_checks"`
	EnableDebug     *bool             `hcl:"enable_debug"`
	NoRemoteExec    *bool             `hcl:"disable_remote_exec"`
	LocalScripts    *bool             `hcl:"enable_local_script_checks"`
	NodeMeta        map[string]string `hcl:"node_meta"`
	Bootstrap       *bool             `hcl:"bootstrap"`
	Reconnect       *string           `hcl:"reconnect_timeout"`
	Addresses       *fileAddresses    `hcl:"addresses"`
	Connect         *fileConnect      `hcl:"connect"`
	Performance     *filePerformance  `hcl:"performance"`
	Limits          *fileLimits       `hcl:"limits"`
	RaftLogStore    *fileLogStore     `hcl:"raft_logstore"`
	// TLS: the tls block and the older top-level keys (tlsconfig.Resolve
	// applies Consul's precedence).
	TLS                  *fileTLS `hcl:"tls"`
	CAFile               *string  `hcl:"ca_file"`
	CAPath               *string  `hcl:"ca_path"`
	CertFile             *string  `hcl:"cert_file"`
	KeyFile              *string  `hcl:"key_file"`
	VerifyIncoming       *bool    `hcl:"verify_incoming"`
	VerifyIncomingRPC    *bool    `hcl:"verify_incoming_rpc"`
	VerifyIncomingHTTPS  *bool    `hcl:"verify_incoming_https"`
	VerifyOutgoing       *bool    `hcl:"verify_outgoing"`
	VerifyServerHostname *bool    `hcl:"verify_server_hostname"`
	TLSMinVersion        *string  `hcl:"tls_min_version"`
	TLSCipherSuites      *string  `hcl:"tls_cipher_suites"`
	// Service and check definitions (service {}, services [], check {},
	// checks []) are read by definitions.go, not decoded here; the
	// fields only declare the keys.
	Service  *struct{} `hcl:"service"`
	Services *struct{} `hcl:"services"`
	Check    *struct{} `hcl:"check"`
	Checks   *struct{} `hcl:"checks"`
	// cairn's own keys (Consul has no VIPs of this kind).
	VIPCIDR      *string `hcl:"vip_cidr"`
	VIPDataplane *string `hcl:"vip_dataplane"`
	VIPScheduler *string `hcl:"vip_scheduler"`
	VIPGrace     *string `hcl:"vip_grace"`
	// docker { ... }: the in-process registrator (-docker and its options).
	Docker *fileDocker `hcl:"docker"`
	// acl { ... } and its older top-level names (agent/acl.go).
	ACL                 *fileACL `hcl:"acl"`
	ACLDefaultPolicy    *string  `hcl:"acl_default_policy"`
	ACLDownPolicy       *string  `hcl:"acl_down_policy"`
	ACLTTL              *string  `hcl:"acl_ttl"`
	ACLMasterToken      *string  `hcl:"acl_master_token"`
	ACLToken            *string  `hcl:"acl_token"`
	ACLAgentToken       *string  `hcl:"acl_agent_token"`
	ACLAgentMasterToken *string  `hcl:"acl_agent_master_token"`
	ACLReplicationToken *string  `hcl:"acl_replication_token"`
	ACLKeyListPolicy    *bool    `hcl:"acl_enable_key_list_policy"`
}

// fileDNS is Consul's dns_config block, in the part cairn reads.
// Durations are strings ("10s"), as Consul writes them.
type fileDNS struct {
	ServiceTTL  *string `hcl:"service_ttl"`
	NodeTTL     *string `hcl:"node_ttl"`
	OnlyPassing *bool   `hcl:"only_passing"`
}

// filePerformance is Consul's performance block, in the part cairn reads.
type filePerformance struct {
	RPCHoldTimeout *string `hcl:"rpc_hold_timeout"`
}

// fileLimits is Consul's limits block, in the part cairn reads, plus
// max_blocking_queries (cairn's).
type fileLimits struct {
	HTTPMaxConnsPerClient *int `hcl:"http_max_conns_per_client"`
	MaxBlockingQueries    *int `hcl:"max_blocking_queries"`
}

// fileLogStore is Consul's raft_logstore block, in the part cairn reads.
type fileLogStore struct {
	Backend *string `hcl:"backend"`
}

// fileTLS is Consul's tls block (tls.grpc is accepted and ignored).
type fileTLS struct {
	Defaults    *tlsconfig.Protocol `hcl:"defaults"`
	InternalRPC *tlsconfig.Protocol `hcl:"internal_rpc"`
	HTTPS       *tlsconfig.Protocol `hcl:"https"`
}

type filePorts struct {
	HTTPS   *int `hcl:"https"`
	HTTP    *int `hcl:"http"`
	DNS     *int `hcl:"dns"`
	SerfLAN *int `hcl:"serf_lan"`
	Server  *int `hcl:"server"`
}

// fileAddresses is Consul's addresses block: per-listener bind
// addresses. cairn's HTTP API and DNS share one address (client_addr), so
// an address here applies when it names an IP; unix sockets are refused.
type fileAddresses struct {
	HTTP *string `hcl:"http"`
	DNS  *string `hcl:"dns"`
}

// fileConnect is Consul's connect block. cairn runs no proxies and signs
// no certificates: enabled makes the agent answer the Connect CA roots
// endpoint with its own root (see agent/httpapi connect.go), so tools that
// wait for it start.
type fileConnect struct {
	Enabled *bool `hcl:"enabled"`
}

// LoadConfigFile applies one Consul-style config file, HCL or JSON (told
// apart by content, as hcl does), on top of cfg. Keys it does not know are
// an error that names the key and the file. Lists (retry_join, recursors,
// start_join) are appended to what cfg already holds, as Consul merges
// them; everything else replaces.
func LoadConfigFile(cfg *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	if strings.TrimSpace(string(b)) == "" {
		return nil
	}
	root, err := hcl.ParseBytes(b)
	if err != nil {
		return fmt.Errorf("parse config file %s: %w", path, err)
	}
	ignored, err := checkKeys(root.Node, reflect.TypeFor[fileConfig](), "")
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for _, k := range ignored {
		cfg.ConfigWarnings = append(cfg.ConfigWarnings, fmt.Sprintf("config key %s (in %s) has no effect in cairn; it is accepted so that Consul's config files load unchanged", k, path))
	}
	// Decode key by key, so that a bad value is reported with its key
	// (hcl's own errors name neither).
	var fc fileConfig
	for _, item := range root.Node.(*ast.ObjectList).Items {
		key, _ := item.Keys[0].Token.Value().(string)
		if slices.Contains(ignored, key) {
			continue
		}
		if isDefinitionKey(key) {
			if err := readDefinitions(cfg, key, item); err != nil {
				return fmt.Errorf("config file %s: %s%w", path, at(item), err)
			}
			continue
		}
		one := &ast.ObjectList{Items: []*ast.ObjectItem{item}}
		if err := hcl.DecodeObject(&fc, one); err != nil {
			key, _ := item.Keys[0].Token.Value().(string)
			return fmt.Errorf("config file %s: %s%s: %w", path, at(item), key, err)
		}
	}
	if err := fc.apply(cfg); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// at is "line N: " for HCL; hcl's JSON parser keeps no positions.
func at(n ast.Node) string {
	if line := n.Pos().Line; line > 0 {
		return fmt.Sprintf("line %d: ", line)
	}
	return ""
}

// LoadConfigDir applies every *.json and *.hcl file in dir, in lexical
// order, as Consul's -config-dir does; other files are skipped.
func LoadConfigDir(cfg *Config, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read config dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			if ext == ".json" || ext == ".hcl" {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := LoadConfigFile(cfg, filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// checkKeys reports the first key under n that typ (a struct with hcl
// tags) does not declare and that is not one of Consul's keys
// (consulKeys); it returns Consul's keys that cairn does not read, by
// their full name ("ports.grpc"). hcl v1 decodes unknown keys silently.
func checkKeys(n ast.Node, typ reflect.Type, prefix string) (ignored []string, err error) {
	var list *ast.ObjectList
	switch v := n.(type) {
	case *ast.ObjectList:
		list = v
	case *ast.ObjectType:
		list = v.List
	default:
		return nil, nil
	}
	known := map[string]reflect.Type{}
	var names []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		known[name] = ft
		names = append(names, name)
	}
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		key, _ := item.Keys[0].Token.Value().(string)
		ft, ok := known[key]
		if !ok {
			if consulKeys[prefix+key] {
				if !slices.Contains(ignored, prefix+key) {
					ignored = append(ignored, prefix+key)
				}
				continue
			}
			slices.Sort(names)
			return nil, fmt.Errorf("%sunknown key %q; it is neither one of cairn's keys%s (%s) nor one of Consul's",
				at(item), prefix+key, inBlock(prefix), strings.Join(names, ", "))
		}
		if ft.Kind() != reflect.Struct || ft.NumField() == 0 {
			continue
		}
		// HCL writes `ports { http = 1 }` (one key, object value) or
		// `ports http { ... }`-style nested keys; JSON the former.
		var sub ast.Node = item.Val
		if len(item.Keys) > 1 {
			sub = &ast.ObjectList{Items: []*ast.ObjectItem{{Keys: item.Keys[1:], Val: item.Val}}}
		}
		more, err := checkKeys(sub, ft, prefix+key+".")
		if err != nil {
			return nil, err
		}
		ignored = append(ignored, more...)
	}
	return ignored, nil
}

func inBlock(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " in " + strings.TrimSuffix(prefix, ".")
}

func (fc *fileConfig) apply(c *Config) error {
	set(&c.NodeName, fc.NodeName)
	set(&c.NodeID, fc.NodeID)
	set(&c.Datacenter, fc.Datacenter)
	set(&c.DataDir, fc.DataDir)
	set(&c.Server, fc.Server)
	set(&c.BootstrapExpect, fc.BootstrapExpect)
	set(&c.BindAddr, fc.BindAddr)
	set(&c.AdvertiseAddr, fc.AdvertiseAddr)
	set(&c.ClientAddr, fc.ClientAddr)
	if p := fc.Ports; p != nil {
		set(&c.Ports.HTTP, p.HTTP)
		set(&c.Ports.HTTPS, p.HTTPS)
		set(&c.Ports.DNS, p.DNS)
		set(&c.Ports.SerfLAN, p.SerfLAN)
		set(&c.Ports.Server, p.Server)
	}
	c.Join = append(c.Join, fc.StartJoin...)
	c.RetryJoin = append(c.RetryJoin, fc.RetryJoin...)
	set(&c.Encrypt, fc.Encrypt)
	set(&c.Domain, fc.Domain)
	set(&c.AltDomain, fc.AltDomain)
	c.Recursors = append(c.Recursors, fc.Recursors...)
	set(&c.LogLevel, fc.LogLevel)
	set(&c.LeaveOnTerminate, fc.LeaveOnTerm)
	set(&c.EnableScriptChecks, fc.ScriptChecks)
	set(&c.EnableDebug, fc.EnableDebug)
	if fc.NoRemoteExec != nil {
		c.EnableRemoteExec = !*fc.NoRemoteExec
	}
	set(&c.EnableLocalScriptChecks, fc.LocalScripts)
	if len(fc.NodeMeta) > 0 {
		if c.NodeMeta == nil {
			c.NodeMeta = map[string]string{}
		}
		maps.Copy(c.NodeMeta, fc.NodeMeta)
	}
	// bootstrap = true is Consul's bootstrap_expect = 1 (a lone server
	// elects itself).
	if fc.Bootstrap != nil && *fc.Bootstrap && c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
	if fc.Reconnect != nil {
		v, err := time.ParseDuration(*fc.Reconnect)
		if err != nil {
			return fmt.Errorf("reconnect_timeout = %q is not a duration; give one with a unit, such as \"72h\"", *fc.Reconnect)
		}
		c.ReconnectTimeout = v
	}
	if a := fc.Addresses; a != nil {
		for _, addr := range []struct {
			key string
			v   *string
		}{{"addresses.http", a.HTTP}, {"addresses.dns", a.DNS}} {
			if addr.v == nil || *addr.v == "" {
				continue
			}
			if _, err := netip.ParseAddr(*addr.v); err != nil {
				return fmt.Errorf("%s = %q: cairn binds its HTTP API and DNS to one IP address; give an IP (unix sockets and go-sockaddr templates are not supported), or use client_addr", addr.key, *addr.v)
			}
			c.ClientAddr = *addr.v
		}
	}
	if fc.Connect != nil {
		set(&c.ConnectEnabled, fc.Connect.Enabled)
	}
	set(&c.VIPCIDR, fc.VIPCIDR)
	set(&c.VIPDataplane, fc.VIPDataplane)
	set(&c.VIPScheduler, fc.VIPScheduler)
	if fc.VIPGrace != nil {
		v, err := time.ParseDuration(*fc.VIPGrace)
		if err != nil {
			return fmt.Errorf("vip_grace = %q is not a duration; give one with a unit, such as \"1h\"", *fc.VIPGrace)
		}
		c.VIPGrace = v
	}
	if d := fc.Docker; d != nil {
		if err := d.apply(c); err != nil {
			return err
		}
	}
	if p := fc.Performance; p != nil && p.RPCHoldTimeout != nil {
		v, err := time.ParseDuration(*p.RPCHoldTimeout)
		if err != nil {
			return fmt.Errorf("performance.rpc_hold_timeout = %q is not a duration; give one with a unit, such as \"7s\"", *p.RPCHoldTimeout)
		}
		c.RPCHoldTimeout = v
	}
	if r := fc.RaftLogStore; r != nil && r.Backend != nil {
		switch *r.Backend {
		case kv.LogStoreBolt, kv.LogStoreWAL:
			c.RaftLogStore = *r.Backend
		default:
			return fmt.Errorf("raft_logstore.backend = %q is not a log store; use %q (the default) or %q", *r.Backend, kv.LogStoreWAL, kv.LogStoreBolt)
		}
	}
	legacy := fileACLLegacy{fc.ACLDefaultPolicy, fc.ACLDownPolicy, fc.ACLTTL, fc.ACLMasterToken, fc.ACLToken,
		fc.ACLAgentToken, fc.ACLAgentMasterToken, fc.ACLReplicationToken, fc.ACLKeyListPolicy}
	if err := legacy.apply(&c.ACL); err != nil {
		return err
	}
	if fc.ACL != nil {
		if err := fc.ACL.apply(&c.ACL); err != nil {
			return err
		}
	}
	fc.applyTLS(&c.TLS)
	if l := fc.Limits; l != nil {
		set(&c.Limits.HTTPMaxConnsPerClient, l.HTTPMaxConnsPerClient)
		set(&c.Limits.MaxBlockingQueries, l.MaxBlockingQueries)
	}
	if d := fc.DNSConfig; d != nil {
		for _, ttl := range []struct {
			key string
			v   *string
			dst *time.Duration
		}{{"dns_config.service_ttl", d.ServiceTTL, &c.DNS.ServiceTTL}, {"dns_config.node_ttl", d.NodeTTL, &c.DNS.NodeTTL}} {
			if ttl.v == nil {
				continue
			}
			v, err := time.ParseDuration(*ttl.v)
			if err != nil {
				return fmt.Errorf("%s = %q is not a duration; give whole seconds with a unit, such as \"10s\"", ttl.key, *ttl.v)
			}
			*ttl.dst = v
		}
		set(&c.DNS.OnlyPassing, d.OnlyPassing)
	}
	return nil
}

// applyTLS merges the tls keys of one file over the earlier files,
// block by block and key by key, as Consul merges config files.
func (fc *fileConfig) applyTLS(t *tlsconfig.Config) {
	if fc.TLS != nil {
		for _, b := range []struct{ dst, src *tlsconfig.Protocol }{
			{&t.Defaults, fc.TLS.Defaults}, {&t.InternalRPC, fc.TLS.InternalRPC}, {&t.HTTPS, fc.TLS.HTTPS},
		} {
			if b.src == nil {
				continue
			}
			keep(&b.dst.CAFile, b.src.CAFile)
			keep(&b.dst.CAPath, b.src.CAPath)
			keep(&b.dst.CertFile, b.src.CertFile)
			keep(&b.dst.KeyFile, b.src.KeyFile)
			keep(&b.dst.VerifyIncoming, b.src.VerifyIncoming)
			keep(&b.dst.VerifyOutgoing, b.src.VerifyOutgoing)
			keep(&b.dst.VerifyServerHostname, b.src.VerifyServerHostname)
			keep(&b.dst.TLSMinVersion, b.src.TLSMinVersion)
			keep(&b.dst.TLSCipherSuites, b.src.TLSCipherSuites)
		}
	}
	d := &t.Deprecated
	for _, k := range []struct{ dst, src **string }{
		{&d.CAFile, &fc.CAFile}, {&d.CAPath, &fc.CAPath}, {&d.CertFile, &fc.CertFile}, {&d.KeyFile, &fc.KeyFile},
		{&d.TLSMinVersion, &fc.TLSMinVersion}, {&d.TLSCipherSuites, &fc.TLSCipherSuites},
	} {
		keep(k.dst, *k.src)
	}
	for _, k := range []struct{ dst, src **bool }{
		{&d.VerifyIncoming, &fc.VerifyIncoming}, {&d.VerifyIncomingRPC, &fc.VerifyIncomingRPC},
		{&d.VerifyIncomingHTTPS, &fc.VerifyIncomingHTTPS}, {&d.VerifyOutgoing, &fc.VerifyOutgoing},
		{&d.VerifyServerHostname, &fc.VerifyServerHostname},
	} {
		keep(k.dst, *k.src)
	}
}

// keep sets *dst to v when v is set (a pointer field of a later file).
func keep[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
