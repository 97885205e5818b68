package template

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var templateFlagTests = []struct {
	in      string
	want    TemplateConfig
	wantErr string
}{
	{in: "in.ctmpl", want: TemplateConfig{Source: "in.ctmpl"}},
	{in: "in.ctmpl:out.conf", want: TemplateConfig{Source: "in.ctmpl", Destination: "out.conf"}},
	{in: "/etc/t/web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload", want: TemplateConfig{Source: "/etc/t/web.ctmpl", Destination: "/etc/nginx/conf.d/web.conf", Command: "nginx -s reload"}},
	// Everything after the second colon is the command.
	{in: "a:b:sh -c 'echo a:b; date +%H:%M'", want: TemplateConfig{Source: "a", Destination: "b", Command: "sh -c 'echo a:b; date +%H:%M'"}},
	{in: "a:b:", want: TemplateConfig{Source: "a", Destination: "b"}},
	{in: "a::cmd", want: TemplateConfig{Source: "a", Command: "cmd"}},
	{in: "", wantErr: `-template "": give source[:destination[:command]], e.g. -template "web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload"`},
	{in: ":out", wantErr: `-template ":out": the source (before the first colon) is empty; the form is source[:destination[:command]]`},
}

func TestParseTemplateFlag(t *testing.T) {
	for _, tc := range templateFlagTests {
		got, err := ParseTemplateFlag(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseTemplateFlag(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplateFlag(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseTemplateFlag(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// FuzzParseTemplateFlag: the parser never panics, a result always has a
// source and no colon in source or destination, and the fields put back
// together give the input.
func FuzzParseTemplateFlag(f *testing.F) {
	for _, tc := range templateFlagTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseTemplateFlag(s)
		if err != nil {
			return
		}
		if c.Source == "" || strings.Contains(c.Source, ":") || strings.Contains(c.Destination, ":") {
			t.Fatalf("ParseTemplateFlag(%q) = %+v: empty source or a colon in source/destination", s, c)
		}
		back := c.Source
		if strings.Contains(s, ":") {
			back += ":" + c.Destination
			if strings.Count(s, ":") >= 2 {
				back += ":" + c.Command
			}
		}
		if back != s {
			t.Fatalf("ParseTemplateFlag(%q) = %+v, which joins back to %q", s, c, back)
		}
	})
}

func TestParseWait(t *testing.T) {
	tests := []struct {
		in      string
		want    Wait
		wantErr string
	}{
		{in: "1s:5s", want: Wait{time.Second, 5 * time.Second}},
		{in: "2s", want: Wait{2 * time.Second, 8 * time.Second}},
		{in: " 1s : 1s ", want: Wait{time.Second, time.Second}},
		{in: "0s", want: Wait{}},
		{in: "5s:1s", wantErr: `wait "5s:1s": max 1s is less than min 5s; give max >= min`},
		{in: "soon", wantErr: `wait "soon": min "soon" is not a duration; the form is min or min:max, e.g. 1s:5s`},
		{in: "1s:2s:3s", wantErr: `wait "1s:2s:3s": too many colons; the form is min or min:max, e.g. 1s:5s`},
		{in: "-1s", wantErr: `wait "-1s": durations cannot be negative`},
	}
	for _, tc := range tests {
		got, err := ParseWait(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseWait(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseWait(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadConfigFile(t *testing.T) {
	w := func(min, max time.Duration) *Wait { return &Wait{min, max} }
	tests := []struct {
		name    string
		file    string // name decides HCL or JSON only by content
		body    string
		want    FileConfig
		wantErr string // with PATH for the file's path
	}{
		{
			name: "consul-template's keys",
			body: `
consul {
  address = "127.0.0.1:8500"
  token   = "secret"
}
log_level = "debug"
wait {
  min = "1s"
  max = "4s"
}
template {
  source          = "web.ctmpl"
  destination     = "/etc/nginx/conf.d/web.conf"
  command         = "nginx -s reload"
  command_timeout = "60s"
  perms           = 0640
  backup          = true
  wait            = "2s:10s"
  left_delimiter  = "[["
  right_delimiter = "]]"
  error_on_missing_key = true
  check           = "nginx -t"
  check_timeout   = "5s"
}
template {
  contents    = "{{ key \"a\" }}"
  destination = "a.txt"
  perms       = "0600"
  wait {
    min = "3s"
  }
}
`,
			want: FileConfig{
				ConsulAddr: "127.0.0.1:8500", Token: "secret", LogLevel: "debug", Wait: w(time.Second, 4*time.Second),
				Templates: []TemplateConfig{
					{Source: "web.ctmpl", Destination: "/etc/nginx/conf.d/web.conf", Command: "nginx -s reload", CommandTimeout: time.Minute,
						Perms: 0o640, Backup: true, Wait: w(2*time.Second, 10*time.Second), LeftDelim: "[[", RightDelim: "]]",
						ErrMissingKey: true, Check: "nginx -t", CheckTimeout: 5 * time.Second},
					{Contents: `{{ key "a" }}`, Destination: "a.txt", Perms: 0o600, Wait: w(3*time.Second, 12*time.Second)},
				},
			},
		},
		{
			name: "json",
			body: `{"template": [{"source": "a.ctmpl", "destination": "a", "perms": 420}, {"source": "b.ctmpl", "destination": "b"}], "wait": "1s"}`,
			want: FileConfig{Wait: w(time.Second, 4*time.Second), Templates: []TemplateConfig{
				{Source: "a.ctmpl", Destination: "a", Perms: 0o644}, {Source: "b.ctmpl", Destination: "b"}}},
		},
		{name: "unknown top-level key", body: "vault {\n}\n", wantErr: `PATH:1:1: unknown key "vault"; cairn template reads consul, log_level, template, wait`},
		{name: "unknown template key", body: "template {\n  source = \"a\"\n  sorce = \"b\"\n}\n",
			wantErr: `PATH:3:3: unknown key "sorce" in template; cairn template reads backup, check, check_timeout, command, command_timeout, contents, destination, error_on_missing_key, left_delimiter, perms, right_delimiter, source, wait`},
		{name: "bad duration", body: "template {\n  source = \"a\"\n  command_timeout = \"soon\"\n}\n", wantErr: `PATH:3:3: command_timeout = "soon": expected a duration such as "30s"`},
		{name: "bad perms", body: "template {\n  source = \"a\"\n  perms = 4095\n}\n", wantErr: `PATH:3:3: perms = 4095: expected permission bits such as 0644`},
		{name: "bad octal", body: "template {\n  source = \"a\"\n  perms = 0999\n}\n", wantErr: `parse config file PATH:3:15: illegal octal number`},
		{name: "no source", body: "template {\n  destination = \"a\"\n}\n", wantErr: `PATH:1:1: template needs source = "<file>" (or contents)`},
		{name: "bad wait", body: "wait = \"5s:1s\"\n", wantErr: `PATH:1:1: wait "5s:1s": max 1s is less than min 5s; give max >= min`},
		{name: "syntax", body: "template {\n", wantErr: "parse config file PATH:2:2: object expected closing RBRACE got: EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.hcl")
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := LoadConfigFile(path)
			if tc.wantErr != "" {
				want := strings.ReplaceAll(tc.wantErr, "PATH", path)
				if err == nil || err.Error() != want {
					t.Errorf("LoadConfigFile error = %v\nwant %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("LoadConfigFile (-want +got):\n%s", diff)
			}
		})
	}
}
