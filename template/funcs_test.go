package template

import (
	"strings"
	"testing"
)

// brain is data for an execution, by the query string of each function:
// "service webapp", "key foo", "ls list"...
type brain map[string]any

func (b brain) recall(t *testing.T) func(dependency) (any, bool) {
	data := map[dependency]any{}
	for q, v := range b {
		fn, arg, _ := strings.Cut(q, " ")
		var (
			d   dependency
			err error
		)
		switch fn {
		case "service":
			d, err = parseHealthService(arg)
		case "services":
			d, err = parseCatalogServices(arg)
		case "nodes":
			d, err = parseCatalogNodes(arg)
		case "node":
			d, err = parseCatalogNode(arg)
		case "key":
			d, err = parseKV(arg, depKVBlock)
		case "keyOrDefault":
			d, err = parseKV(arg, depKVGet)
		case "ls":
			d, err = parseKVList(arg)
		case "datacenters":
			d = dependency{kind: depDatacenters, ignore: arg == "true"}
		case "file":
			d = dependency{kind: depFile, name: arg}
		default:
			t.Fatalf("brain: unknown function %q", fn)
		}
		if err != nil {
			t.Fatal(err)
		}
		data[d] = v
	}
	return func(d dependency) (any, bool) {
		v, ok := data[d]
		return v, ok
	}
}

func webapp(tags ...[]string) []*HealthService {
	addrs := []string{"1.2.3.4", "5.6.7.8"}
	var out []*HealthService
	for i, tg := range tags {
		out = append(out, &HealthService{Node: "node" + string(rune('1'+i)), Address: addrs[i], Tags: tg})
	}
	return out
}

// TestConsulTemplateCases are consul-template's own expectations for its
// functions (template/template_test.go TestTemplate_Execute), run against
// cairn's implementation.
func TestConsulTemplateCases(t *testing.T) {
	t.Setenv("CT_TEST", "1")
	tests := []struct {
		name    string
		in      string
		data    brain
		want    string
		wantErr bool
	}{
		{name: "plain", in: `test`, want: "test"},
		{name: "missing deps render empty", in: `{{ key "foo" }}`, want: ""},
		{name: "base64Decode", in: `{{ base64Decode "aGVsbG8=" }}`, want: "hello"},
		{name: "base64Decode bad", in: `{{ base64Decode "aGVsxxbG8=" }}`, wantErr: true},
		{name: "base64Encode", in: `{{ base64Encode "hello" }}`, want: "aGVsbG8="},
		{name: "base64URLDecode", in: `{{ base64URLDecode "dGVzdGluZzEyMw==" }}`, want: "testing123"},
		{name: "base64URLEncode", in: `{{ base64URLEncode "testing123" }}`, want: "dGVzdGluZzEyMw=="},
		{name: "datacenters", in: `{{ datacenters }}`, data: brain{"datacenters ": []string{"dc1", "dc2"}}, want: "[dc1 dc2]"},
		{name: "datacenters ignore", in: `{{ datacenters true }}`, data: brain{"datacenters true": []string{"dc1", "dc2"}}, want: "[dc1 dc2]"},
		{name: "file", in: `{{ file "/path/to/file" }}`, data: brain{"file /path/to/file": "content"}, want: "content"},
		{name: "key", in: `{{ key "key" }}`, data: brain{"key key": "5"}, want: "5"},
		{name: "keyExists", in: `{{ keyExists "key" }} {{ keyExists "no_key" }}`, data: brain{"keyOrDefault key": "x", "keyOrDefault no_key": nil}, want: "true false"},
		{name: "keyOrDefault", in: `{{ keyOrDefault "key" "100" }} {{ keyOrDefault "no_key" "200" }}`, data: brain{"keyOrDefault key": "150"}, want: "150 200"},
		{name: "ls", in: `{{ range ls "list" }}{{ .Key }}={{ .Value }}{{ end }}`,
			data: brain{"ls list": []*KeyPair{{Key: ""}, {Key: "foo", Value: "bar"}, {Key: "foo/zip", Value: "zap"}}}, want: "foo=bar"},
		{name: "node", in: `{{ with node }}{{ .Node.Node }}{{ range .Services }}{{ .Service }}{{ end }}{{ end }}`,
			data: brain{"node ": &CatalogNode{Node: &Node{Node: "node1"}, Services: []*CatalogNodeService{{Service: "service1"}}}}, want: "node1service1"},
		{name: "nodes", in: `{{ range nodes }}{{ .Node }}{{ end }}`, data: brain{"nodes ": []*Node{{Node: "node1"}, {Node: "node2"}}}, want: "node1node2"},
		{name: "service", in: `{{ range service "webapp" }}{{ .Address }}{{ end }}`, data: brain{"service webapp": webapp(nil, nil)}, want: "1.2.3.45.6.7.8"},
		{name: "service filter", in: `{{ range service "webapp" "passing,any" }}{{ .Address }}{{ end }}`, data: brain{"service webapp|passing,any": webapp(nil, nil)}, want: "1.2.3.45.6.7.8"},
		{name: "services", in: `{{ range services }}{{ .Name }}{{ end }}`, data: brain{"services ": []*CatalogSnippet{{Name: "service1"}, {Name: "service2"}}}, want: "service1service2"},
		{name: "tree", in: `{{ range tree "key" }}{{ .Key }}={{ .Value }}{{ end }}`,
			data: brain{"ls key": []*KeyPair{{Key: ""}, {Key: "admin/port", Value: "1134"}, {Key: "maxconns", Value: "5"}, {Key: "minconns", Value: "2"}}}, want: "admin/port=1134maxconns=5minconns=2"},
		{name: "scratch.Key", in: `{{ scratch.Set "a" "2" }}{{ scratch.Key "a" }}`, want: "true"},
		{name: "scratch.Get", in: `{{ scratch.Set "a" "2" }}{{ scratch.Get "a" }}`, want: "2"},
		{name: "scratch.SetX", in: `{{ scratch.SetX "a" "2" }}{{ scratch.SetX "a" "1" }}{{ scratch.Get "a" }}`, want: "2"},
		{name: "scratch.MapSet", in: `{{ scratch.MapSet "a" "foo" "bar" }}{{ scratch.MapValues "a" }}`, want: "[bar]"},
		{name: "scratch.MapSetX", in: `{{ scratch.MapSetX "a" "foo" "bar" }}{{ scratch.MapSetX "a" "foo" "baz" }}{{ scratch.MapValues "a" }}`, want: "[bar]"},
		{name: "byKey", in: `{{ range $key, $pairs := tree "list" | byKey }}{{ $key }}:{{ range $pairs }}{{ .Key }}={{ .Value }}{{ end }}{{ end }}`,
			data: brain{"ls list": []*KeyPair{{Key: ""}, {Key: "foo/bar", Value: "a"}, {Key: "zip/zap", Value: "b"}}}, want: "foo:bar=azip:zap=b"},
		{name: "byTag", in: `{{ range $tag, $services := service "webapp" | byTag }}{{ $tag }}:{{ range $services }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "staging"}, []string{"staging"})}, want: "prod:1.2.3.4staging:1.2.3.45.6.7.8"},
		{name: "contains", in: `{{ range service "webapp" }}{{ if .Tags | contains "prod" }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "staging"}, []string{"staging"})}, want: "1.2.3.4"},
		{name: "containsAll", in: `{{ $req := parseJSON "[\"prod\",\"us-realm\"]" }}{{ range service "webapp" }}{{ if .Tags | containsAll $req }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "us-realm"}, []string{"prod", "ca-realm"})}, want: "1.2.3.4"},
		{name: "containsAll empty", in: `{{ $req := parseJSON "[]" }}{{ range service "webapp" }}{{ if .Tags | containsAll $req }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod"}, []string{"ca"})}, want: "1.2.3.45.6.7.8"},
		{name: "containsAny", in: `{{ $ok := parseJSON "[\"v2\",\"v3\"]" }}{{ range service "webapp" }}{{ if .Tags | containsAny $ok }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "v1"}, []string{"prod", "v2"})}, want: "5.6.7.8"},
		{name: "containsAny empty", in: `{{ $ok := parseJSON "[]" }}{{ range service "webapp" }}{{ if .Tags | containsAny $ok }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "v1"}, []string{"prod", "v2"})}, want: ""},
		{name: "containsNone", in: `{{ $no := parseJSON "[\"devel\",\"staging\"]" }}{{ range service "webapp" }}{{ if .Tags | containsNone $no }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "v1"}, []string{"devel", "v2"})}, want: "1.2.3.4"},
		{name: "containsNotAll", in: `{{ $x := parseJSON "[\"es-v1\",\"es-v2\"]" }}{{ range service "webapp" }}{{ if .Tags | containsNotAll $x }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "es-v1"}, []string{"prod", "hybrid", "es-v1", "es-v2"})}, want: "1.2.3.4"},
		{name: "env", in: `{{ env "CT_TEST" }}`, want: "1"},
		{name: "executeTemplate", in: `{{ define "custom" }}{{ key "foo" }}{{ end }}{{ executeTemplate "custom" }}`, data: brain{"key foo": "bar"}, want: "bar"},
		{name: "executeTemplate dot", in: `{{ define "custom" }}{{ key . }}{{ end }}{{ executeTemplate "custom" "foo" }}`, data: brain{"key foo": "bar"}, want: "bar"},
		{name: "explode", in: `{{ range $k, $v := tree "list" | explode }}{{ $k }}{{ $v }}{{ end }}`,
			data: brain{"ls list": []*KeyPair{{Key: ""}, {Key: "foo/bar", Value: "a"}, {Key: "zip/zap", Value: "b"}}}, want: "foomap[bar:a]zipmap[zap:b]"},
		{name: "in", in: `{{ range service "webapp" }}{{ if "prod" | in .Tags }}{{ .Address }}{{ end }}{{ end }}`,
			data: brain{"service webapp": webapp([]string{"prod", "staging"}, []string{"staging"})}, want: "1.2.3.4"},
		{name: "loop", in: `{{ range loop 3 }}1{{ end }}`, want: "111"},
		{name: "loop i", in: `{{ range $i := loop 3 }}{{ $i }}{{ end }}`, want: "012"},
		{name: "join", in: `{{ "a,b,c" | split "," | join ";" }}`, want: "a;b;c"},
		{name: "parseBool", in: `{{ "true" | parseBool }}`, want: "true"},
		{name: "parseFloat", in: `{{ "1.2" | parseFloat }}`, want: "1.2"},
		{name: "parseInt", in: `{{ "-1" | parseInt }}`, want: "-1"},
		{name: "parseJSON", in: `{{ "{\"foo\": \"bar\"}" | parseJSON }}`, want: "map[foo:bar]"},
		{name: "parseUint", in: `{{ "1" | parseUint }}`, want: "1"},
		{name: "plugin", in: `{{ "1" | plugin "echo" }}`, want: "1"},
		{name: "regexMatch", in: `{{ "foo" | regexMatch "[a-z]+" }}`, want: "true"},
		{name: "regexReplaceAll", in: `{{ "foo" | regexReplaceAll "\\w" "x" }}`, want: "xxx"},
		{name: "replaceAll", in: `{{ "hello my hello" | replaceAll "hello" "bye" }}`, want: "bye my bye"},
		{name: "split", in: `{{ "a,b,c" | split "," }}`, want: "[a b c]"},
		{name: "timestamp", in: `{{ timestamp }}`, want: "1970-01-01T00:00:00Z"},
		{name: "timestamp formatted", in: `{{ timestamp "2006-01-02" }}`, want: "1970-01-01"},
		{name: "toJSON", in: `{{ "a,b,c" | split "," | toJSON }}`, want: `["a","b","c"]`},
		{name: "toLower", in: `{{ "HI" | toLower }}`, want: "hi"},
		{name: "toTitle", in: `{{ "this is a sentence" | toTitle }}`, want: "This Is A Sentence"},
		{name: "toUpper", in: `{{ "hi" | toUpper }}`, want: "HI"},
		{name: "trimSpace", in: "{{ \"\\t hi\\n \" | trimSpace }}", want: "hi"},
		{name: "add", in: `{{ 2 | add 2 }}`, want: "4"},
		{name: "subtract", in: `{{ 2 | subtract 2 }}`, want: "0"},
		{name: "multiply", in: `{{ 2 | multiply 2 }}`, want: "4"},
		{name: "divide", in: `{{ 2 | divide 2 }}`, want: "1"},
		{name: "modulo", in: `{{ 3 | modulo 2 }}`, want: "1"},
		{name: "minimum mixed", in: `{{ minimum 2.5 3 }} {{ maximum 2.5 3 }}`, want: "2.5 3"},
		{name: "divide by zero", in: `{{ 1 | divide 0 }}`, wantErr: true},
		{name: "modulo of a float", in: `{{ 1.5 | modulo 2 }}`, wantErr: true},
		{name: "add a string", in: `{{ add 1 "x" }}`, wantErr: true},
		{name: "toYAML is not supported", in: `{{ parseJSON "{}" | toYAML }}`, wantErr: true},
		{name: "secret is not supported", in: `{{ secret "secret/foo" }}`, wantErr: true},
		{name: "sprig prefix", in: `{{ sprig_upper "a" }}{{ "b" | sprig_repeat 2 }}`, want: "Abb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := parse("test.ctmpl", tc.in, parseOptions{Now: epoch})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tm.execute(tc.data.recall(t))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("execute(%q) = %q, want an error", tc.in, res.Output)
				}
				return
			}
			if err != nil {
				t.Fatalf("execute(%q): %v", tc.in, err)
			}
			if got := string(res.Output); got != tc.want {
				t.Errorf("execute(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestMissing: what blocks a template (consul-template's missing set) and
// what does not.
func TestMissing(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		data        brain
		wantMissing []string
	}{
		{name: "key waits for the key", in: `{{ key "a" }}`, wantMissing: []string{"kv.block(a)"}},
		{name: "keyOrDefault waits for an answer only", in: `{{ keyOrDefault "a" "x" }}`, data: brain{"keyOrDefault a": nil}},
		{name: "a service with no instances is an answer", in: `{{ service "web" }}`, data: brain{"service web": []*HealthService{}}},
		{name: "service before its answer", in: `{{ service "tag.web@dc2|any" }}`, wantMissing: []string{"health.service(tag.web@dc2|any)"}},
		{name: "ls of an empty prefix renders", in: `{{ ls "p" }}`, data: brain{"ls p": []*KeyPair{}}},
		{name: "safeLs of an empty prefix waits", in: `{{ safeLs "p" }}`, data: brain{"ls p": []*KeyPair{}}, wantMissing: []string{"kv.list(p)"}},
		{name: "safeTree of folders only waits", in: `{{ safeTree "p" }}`, data: brain{"ls p": []*KeyPair{{Key: "dir/"}}}, wantMissing: []string{"kv.list(p)"}},
		{name: "every missing one is named", in: `{{ key "a" }}{{ nodes }}{{ services "@dc2" }}`, data: brain{"key a": "1"},
			wantMissing: []string{"catalog.nodes", "catalog.services(@dc2)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := parse("test.ctmpl", tc.in, parseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tm.execute(tc.data.recall(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Missing(); strings.Join(got, ",") != strings.Join(tc.wantMissing, ",") {
				t.Errorf("Missing() = %q, want %q", got, tc.wantMissing)
			}
		})
	}
}

func TestParseQueries(t *testing.T) {
	tests := []struct {
		in      string
		parse   func(string) (dependency, error)
		want    string
		wantErr string
	}{
		{in: "web", parse: parseHealthService, want: "health.service(web|passing)"},
		{in: "v1.web@dc2~node1|warning,passing", parse: parseHealthService, want: "health.service(v1.web@dc2~node1|passing,warning)"},
		{in: "a=b:c.web", parse: parseHealthService, want: "health.service(a=b:c.web|passing)"},
		{in: "web|bogus", parse: parseHealthService, wantErr: `service "web|bogus": unknown health filter "bogus"; use passing, warning, critical, maintenance or any`},
		{in: "web app", parse: parseHealthService, wantErr: `service "web app": not a service query; the form is [tag.]name[@datacenter][~near-node][|passing,warning,critical,maintenance,any]`},
		{in: "", parse: parseCatalogServices, want: "catalog.services"},
		{in: "@dc2", parse: parseCatalogServices, want: "catalog.services(@dc2)"},
		{in: "dc2", parse: parseCatalogServices, wantErr: `services "dc2": the argument is @datacenter or nothing`},
		{in: "@dc1~node1", parse: parseCatalogNodes, want: "catalog.nodes(@dc1~node1)"},
		{in: "", parse: parseCatalogNode, want: "catalog.node"},
		{in: "node.one@dc1", parse: parseCatalogNode, want: "catalog.node(node.one@dc1)"},
		{in: "/app/config@dc1", parse: func(s string) (dependency, error) { return parseKV(s, depKVBlock) }, want: "kv.block(app/config@dc1)"},
		{in: "app/config", parse: func(s string) (dependency, error) { return parseKV(s, depKVGet) }, want: "kv.get(app/config)"},
		{in: "/app/", parse: parseKVList, want: "kv.list(app/)"},
	}
	for _, tc := range tests {
		d, err := tc.parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("parse(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q): %v", tc.in, err)
			continue
		}
		if got := d.String(); got != tc.want {
			t.Errorf("parse(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestErrorPositions: syntax and execution errors name file:line:col.
func TestErrorPositions(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		exec bool
	}{
		{name: "unknown function", in: "upstream web {\n  {{ range servce \"web\" }}\n}", want: `parse web.ctmpl:2:12: function "servce" not defined; cairn has consul-template's functions and sprig's as sprig_<name>`},
		{name: "unexpected end", in: "a\nb {{ if true }}x{{ end }} {{ end }}\n", want: `parse web.ctmpl:2:27: unexpected {{end}}`},
		{name: "unclosed action", in: "line one\n  x {{ key \"a\" \n", want: `parse web.ctmpl:2:5: unclosed action`},
		{name: "bad character", in: "ok\nok {{ key \"a\" ! }}", want: `parse web.ctmpl:2:15: unexpected "!" in operand`},
		{name: "missing end", in: "{{ range service \"web\" }}\nx", want: `parse web.ctmpl:2:1: unexpected EOF`},
		{name: "execution error", exec: true, in: "a\n  {{ parseInt \"x\" }}", want: `render web.ctmpl:2:5: at <parseInt "x">: error calling parseInt: parseInt: strconv.ParseInt: parsing "x": invalid syntax`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := parse("web.ctmpl", tc.in, parseOptions{})
			if tc.exec {
				if err != nil {
					t.Fatal(err)
				}
				_, err = tm.execute(brain{}.recall(t))
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v\nwant    %s", err, tc.want)
			}
		})
	}
}
