package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/template"
	"github.com/cairn-dev/cairn/template/templatetest"
)

// TestTemplateCommand runs `cairn template` against a real in-process
// agent over its HTTP API (h2c), the way a user runs it against cairn.
func TestTemplateCommand(t *testing.T) {
	addr := devAgent(t)
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"app/name": "shop", "app/port": "8080", "app/limits/conns": "512"} {
		if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	file := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tmpl := file("app.ctmpl", "name={{ key \"app/name\" }}\nport={{ keyOrDefault \"app/port\" \"80\" }}\nmissing={{ keyOrDefault \"app/nope\" \"fallback\" }}\n{{ range tree \"app\" }}{{ .Key }}={{ .Value }}\n{{ end }}")
	const rendered = "name=shop\nport=8080\nmissing=fallback\nlimits/conns=512\nname=shop\nport=8080\n"
	out := filepath.Join(dir, "app.conf")
	kept := file("kept.conf", "previous\n")
	config := file("config.hcl", `
consul { address = "`+addr+`" }
template {
  source      = "`+tmpl+`"
  destination = "`+filepath.Join(dir, "from-config.conf")+`"
  command     = "echo from-config"
  perms       = 0600
}
`)
	badConfig := file("bad.hcl", "template {\n  source = \"x\"\n  bogus = 1\n}\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  []string // stderr contains each
		check    func(t *testing.T)
	}{
		{
			name: "once", args: []string{"-template", tmpl + ":" + out + ":echo reloaded", "-once", "-log-level", "debug"},
			wantErr: []string{"protocol=h2c", "reloaded\n", `msg=rendered template=` + tmpl},
			check: func(t *testing.T) {
				if got, _ := os.ReadFile(out); string(got) != rendered {
					t.Errorf("%s =\n%s\nwant:\n%s", out, got, rendered)
				}
			},
		},
		{
			name: "dry", args: []string{"-template", tmpl + ":" + filepath.Join(dir, "dry.conf"), "-once", "-dry"},
			wantOut: "> " + filepath.Join(dir, "dry.conf") + "\n" + rendered,
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(dir, "dry.conf")); err == nil {
					t.Error("-dry wrote the file")
				}
			},
		},
		{
			name:     "check refuses",
			args:     []string{"-template", tmpl + ":" + kept + ":touch " + filepath.Join(dir, "reloaded"), "-check", `grep -q '^name=nobody$' "$CAIRN_TEMPLATE_FILE"`, "-once"},
			wantCode: 2,
			wantErr:  []string{"cairn template: render " + tmpl + `: grep -q '^name=nobody$' "$CAIRN_TEMPLATE_FILE" rejected the result (exited with status 1), kept the previous ` + kept},
			check: func(t *testing.T) {
				if got, _ := os.ReadFile(kept); string(got) != "previous\n" {
					t.Errorf("%s = %q, want it kept", kept, got)
				}
				if _, err := os.Stat(filepath.Join(dir, "reloaded")); err == nil {
					t.Error("the command ran after the check refused the result")
				}
			},
		},
		{
			name: "config file", args: []string{"-config", config, "-once"},
			wantErr: []string{"from-config\n"},
			check: func(t *testing.T) {
				st, err := os.Stat(filepath.Join(dir, "from-config.conf"))
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("from-config.conf: %v, %v; want mode 0600", st, err)
				}
			},
		},
		{name: "syntax error", args: []string{"-template", file("bad.ctmpl", "x\n{{ servce \"web\" }}") + ":x", "-consul-addr", addr},
			wantCode: 1, wantErr: []string{"cairn template: parse " + filepath.Join(dir, "bad.ctmpl") + `:2:4: function "servce" not defined`}},
		{name: "bad wait", args: []string{"-template", tmpl + ":x", "-wait", "5s:1s"}, wantCode: 1,
			wantErr: []string{`cairn template: -wait: wait "5s:1s": max 1s is less than min 5s; give max >= min`}},
		{name: "bad config", args: []string{"-config", badConfig}, wantCode: 1,
			wantErr: []string{"cairn template: " + badConfig + `:3:3: unknown key "bogus" in template`}},
		{name: "no templates", args: []string{"-consul-addr", addr}, wantCode: 1,
			wantErr: []string{"cairn template: template: no templates; give at least one -template or a template {} block in -config"}},
		{name: "check without templates", args: []string{"-config", config, "-check", "true"}, wantCode: 1,
			wantErr: []string{"cairn template: -check applies to -template templates and there are none"}},
		{name: "agent down", args: []string{"-template", tmpl + ":x", "-consul-addr", closed, "-once"}, wantCode: 1,
			wantErr: []string{"cairn template: cannot reach a Consul-compatible agent at " + closed}},
		{name: "bad log level", args: []string{"-template", tmpl + ":x", "-log-level", "loud"}, wantCode: 1,
			wantErr: []string{`cairn template: -log-level="loud" is not a log level`}},
		{name: "arguments", args: []string{"extra"}, wantCode: 1, wantErr: []string{"Error found unexpected args: [extra]"}},
	}
	t.Setenv("CONSUL_HTTP_ADDR", addr)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"template"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if tc.wantOut != "" && stdout.String() != tc.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tc.wantOut)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

// apiBackend changes an agent's data through the official client.
type apiBackend struct{ c *api.Client }

func (b apiBackend) PutKV(key, value string) error {
	_, err := b.c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil)
	return err
}

func (b apiBackend) DeleteKV(key string) error {
	_, err := b.c.KV().Delete(key, nil)
	return err
}

func (b apiBackend) RegisterService(id, name, address string, port int, tags []string) error {
	return b.c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: name, Address: address, Port: port, Tags: tags})
}

func (b apiBackend) DeregisterService(id string) error { return b.c.Agent().ServiceDeregister(id) }

// TestTemplateSourceConformance: HTTPSource on a real agent keeps the
// contract the runner relies on (the in-process Source must pass the same
// checks).
func TestTemplateSourceConformance(t *testing.T) {
	addr := devAgent(t)
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	src, err := template.DialHTTP(t.Context(), template.HTTPConfig{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Protocol() != "h2c" {
		t.Errorf("Protocol() = %q, want h2c against cairn", src.Protocol())
	}
	templatetest.Conformance(t, src, apiBackend{c})
}
