package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cairn-dev/cairn/agent"
)

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	base := write(t, dir, "base.hcl", `
node_name        = "from-file"
data_dir         = "/var/lib/cairn"
server           = true
bootstrap_expect = 1
ports { http = 9500 }
retry_join = ["10.0.0.1"]
`)
	later := write(t, dir, "later.json", `{"node_name": "from-later-file", "datacenter": "eu1"}`)
	confDir := t.TempDir()
	write(t, confDir, "a.hcl", `log_level = "debug"`)
	write(t, confDir, "b.json", `{"log_level": "warn", "client_addr": "0.0.0.0"}`)

	fromBase := agent.DefaultConfig()
	fromBase.NodeName = "from-file"
	fromBase.DataDir = "/var/lib/cairn"
	fromBase.Server = true
	fromBase.BootstrapExpect = 1
	fromBase.Ports.HTTP = 9500
	fromBase.RetryJoin = []string{"10.0.0.1"}

	tests := []struct {
		name string
		args []string
		want func(c *agent.Config)
	}{
		{
			name: "defaults",
			args: nil,
			want: func(c *agent.Config) { *c = agent.DefaultConfig() },
		},
		{
			name: "flags only",
			args: []string{"-dev", "-node=n1", "-http-port", "0", "-client", "0.0.0.0", "-recursor", "1.1.1.1", "-recursor", "8.8.8.8", "-log-level", "debug"},
			want: func(c *agent.Config) {
				*c = agent.DefaultConfig()
				c.Dev = true
				c.NodeName = "n1"
				c.Ports.HTTP = 0
				c.ClientAddr = "0.0.0.0"
				c.Recursors = []string{"1.1.1.1", "8.8.8.8"}
				c.LogLevel = "debug"
			},
		},
		{
			name: "ttl and reconnect flags",
			args: []string{"-dev", "-dns-ttl", "5s", "-dns-node-ttl", "1m", "-reconnect-timeout", "8h"},
			want: func(c *agent.Config) {
				*c = agent.DefaultConfig()
				c.Dev = true
				c.DNS.ServiceTTL = 5 * time.Second
				c.DNS.NodeTTL = time.Minute
				c.ReconnectTimeout = 8 * time.Hour
			},
		},
		{
			name: "dns and template flags",
			args: []string{"-dev", "-alt-domain", "", "-dns-port", "0",
				"-template", "a.tmpl:a.conf", "-template", "b.tmpl:b.conf:nginx -s reload",
				"-template-check", "nginx -t", "-template-wait", "1s:5s", "-template-config", "t.hcl"},
			want: func(c *agent.Config) {
				*c = agent.DefaultConfig()
				c.Dev = true
				c.AltDomain = ""
				c.Ports.DNS = 0
				c.Templates = []string{"a.tmpl:a.conf", "b.tmpl:b.conf:nginx -s reload"}
				c.TemplateCheck = "nginx -t"
				c.TemplateWait = "1s:5s"
				c.TemplateConfigs = []string{"t.hcl"}
			},
		},
		{
			name: "file only",
			args: []string{"-config-file", base},
			want: func(c *agent.Config) { *c = fromBase },
		},
		{
			name: "flag after file wins",
			args: []string{"-config-file", base, "-node", "from-flag", "-http-port", "9600"},
			want: func(c *agent.Config) {
				*c = fromBase
				c.NodeName = "from-flag"
				c.Ports.HTTP = 9600
			},
		},
		{
			name: "flag before file wins too",
			args: []string{"-node", "from-flag", "-config-file", base},
			want: func(c *agent.Config) {
				*c = fromBase
				c.NodeName = "from-flag"
			},
		},
		{
			name: "later file wins",
			args: []string{"-config-file", base, "-config-file", later},
			want: func(c *agent.Config) {
				*c = fromBase
				c.NodeName = "from-later-file"
				c.Datacenter = "eu1"
			},
		},
		{
			name: "config dir in lexical order",
			args: []string{"-config-dir", confDir},
			want: func(c *agent.Config) {
				*c = agent.DefaultConfig()
				c.LogLevel = "warn"
				c.ClientAddr = "0.0.0.0"
			},
		},
		{
			name: "list flags add to the file's lists",
			args: []string{"-retry-join", "10.0.0.2", "-config-file", base, "-join", "10.0.0.3"},
			want: func(c *agent.Config) {
				*c = fromBase
				c.RetryJoin = []string{"10.0.0.1", "10.0.0.2"}
				c.Join = []string{"10.0.0.3"}
			},
		},
		{
			name: "explicit flag equal to the default still overrides the file",
			args: []string{"-config-file", base, "-http-port", "8500", "-server=false"},
			want: func(c *agent.Config) {
				*c = fromBase
				c.Ports.HTTP = 8500
				c.Server = false
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadAgentConfig(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("loadAgentConfig(%q) = %v", tt.args, err)
			}
			var want agent.Config
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("loadAgentConfig(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestAgentConfigErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := write(t, dir, "unknown.hcl", "server = true\nverify_incomming = true\n")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown key names key and file", []string{"-config-file", unknown},
			`config file ` + unknown + `: line 2: unknown key "verify_incomming"; it is neither one of cairn's keys (`},
		{"missing file", []string{"-config-file", filepath.Join(dir, "nope.hcl")},
			"read config file: open " + filepath.Join(dir, "nope.hcl") + ": no such file or directory"},
		{"missing dir", []string{"-config-dir", filepath.Join(dir, "nope")},
			"read config dir: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"positional argument", []string{"-dev", "extra"},
			`unexpected argument "extra"; cairn agent takes only flags (see cairn agent -h)`},
		{"unknown flag", []string{"-ui"}, "flag provided but not defined: -ui"},
		{"bad int", []string{"-http-port", "http"}, `invalid value "http" for flag -http-port: parse error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAgentConfig(tt.args, io.Discard)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("loadAgentConfig(%q) = %v, want an error starting %q", tt.args, err, tt.wantErr)
			}
		})
	}
	if _, err := loadAgentConfig([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("loadAgentConfig(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestRunAgentReportsConfigErrors(t *testing.T) {
	tests := []struct {
		args       []string
		wantStderr string
	}{
		{[]string{}, "cairn agent: -data-dir is required unless -dev is set; give a directory for the node ID and the Raft state (it is created if missing)\n"},
		{[]string{"-dev", "-bootstrap-expect=3"}, "cairn agent: -bootstrap-expect=3 conflicts with -dev (a single server); drop one of them\n"},
		{[]string{"-dev", "-log-level", "loud"}, "cairn agent: -log-level=\"loud\" is not a log level; use trace, debug, info, warn or err\n"},
		{[]string{"-dev", "-http-port", "99999"}, "cairn agent: -http-port=99999 is out of range; use 1-65535 (0 picks a free port, -1 turns it off)\n"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(append([]string{"agent"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
		if code != 1 || stderr.String() != tt.wantStderr || stdout.Len() != 0 {
			t.Errorf("cairn agent %s = exit %d, stdout %q, stderr %q; want exit 1, stderr %q",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.wantStderr)
		}
	}
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		args               []string
		wantCode           int
		wantOut, wantErrIn string
	}{
		{[]string{"version"}, 0, "Cairn v" + agent.Version + "\n", ""},
		{[]string{}, 1, "", "Usage: cairn <command>"},
		{[]string{"frobnicate"}, 1, "", `cairn: unknown command "frobnicate"`},
		{[]string{"-dev"}, 1, "", `flags go after the command, as in "cairn agent -dev"`},
		{[]string{"agent", "-h"}, 0, "", "Usage: cairn agent [options]"},
		{[]string{"kv"}, 1, "", "Usage: cairn kv <subcommand>"},
		{[]string{"kv", "list"}, 1, "", `cairn kv: unknown subcommand "list"`},
		{[]string{"members", "-h"}, 0, "", "Usage: cairn members [options]"},
		{[]string{"join", "-h"}, 0, "", "Usage: cairn join [options] ADDRESS..."},
		{[]string{"leave", "-h"}, 0, "", "Usage: cairn leave [options]"},
		{[]string{"force-leave", "-h"}, 0, "", "Usage: cairn force-leave [options] NODE"},
		{[]string{"operator", "raft", "list-peers", "-h"}, 0, "", "Usage: cairn operator raft list-peers [options]"},
		{[]string{"keygen", "-h"}, 0, "", "Usage: cairn keygen"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(tt.args, strings.NewReader(""), &stdout, &stderr)
		if code != tt.wantCode || !strings.HasPrefix(stdout.String(), tt.wantOut) || !strings.Contains(stderr.String(), tt.wantErrIn) {
			t.Errorf("cairn %s = exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q, stderr containing %q",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.wantCode, tt.wantOut, tt.wantErrIn)
		}
	}
}
