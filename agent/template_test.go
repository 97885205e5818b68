package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/template"
	"github.com/cairn-dev/cairn/template/templatetest"
)

// sourceOf is the in-process template source of a running agent.
func sourceOf(r *running) *templateSource {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tmplSource
}

// apiBackend changes an agent's data through its HTTP API.
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

func TestTemplateSourceConformance(t *testing.T) {
	r := start(t, devConfig())
	templatetest.Conformance(t, sourceOf(r), apiBackend{r.client})
}

func dialHTTP(t *testing.T, r *running) *template.HTTPSource {
	t.Helper()
	src, err := template.DialHTTP(context.Background(), template.HTTPConfig{Address: r.HTTPAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return src
}

// TestTemplateSourceMatchesHTTP: every query answers the same through
// the in-process source as through the HTTP API and the official
// client, field by field, so templates cannot tell them apart.
func TestTemplateSourceMatchesHTTP(t *testing.T) {
	r := start(t, devConfig())
	err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Address: "127.0.0.11", Port: 8001, Tags: []string{"v1"},
		Meta:            map[string]string{"team": "edge"},
		TaggedAddresses: map[string]api.ServiceAddress{"lan": {Address: "127.0.0.11", Port: 8001}},
		Checks: api.AgentServiceChecks{
			{CheckID: "web-ttl", TTL: "1h", Status: api.HealthPassing},
			{CheckID: "web-http", HTTP: "http://127.0.0.1:1/health", Interval: "1h", Timeout: "3s",
				Header: map[string][]string{"X-A": {"b"}}, Status: api.HealthPassing},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-2", Name: "web", Port: 8002}); err != nil {
		t.Fatal(err)
	}
	// The HTTP check runs once at once (to a closed port): wait for its
	// result, or it could land between the two answers of a case.
	eventually(t, "the HTTP check's first result", 10*time.Second, func() (bool, string) {
		checks, err := r.client.Agent().Checks()
		if err != nil {
			return false, err.Error()
		}
		c := checks["web-http"]
		return c != nil && c.Output != "", fmt.Sprintf("%+v", c)
	})
	for k, v := range map[string]string{"app/a": "1", "app/b": "", "app/c/d": "x"} {
		if _, err := r.client.KV().Put(&api.KVPair{Key: k, Value: []byte(v), Flags: 42}, nil); err != nil {
			t.Fatal(err)
		}
	}
	local, remote := sourceOf(r), dialHTTP(t, r)
	ctx := context.Background()
	q := template.QueryOptions{}

	type answer struct {
		V   any
		Idx uint64
		Err error
	}
	pair := func(v any, idx uint64, err error) answer { return answer{v, idx, err} }
	tests := []struct {
		name          string
		local, remote func() answer
	}{
		{"health web",
			func() answer { return pair(local.HealthService(ctx, "web", "", false, q)) },
			func() answer { return pair(remote.HealthService(ctx, "web", "", false, q)) }},
		{"health web tag v1 passing",
			func() answer { return pair(local.HealthService(ctx, "web", "v1", true, q)) },
			func() answer { return pair(remote.HealthService(ctx, "web", "v1", true, q)) }},
		{"health missing",
			func() answer { return pair(local.HealthService(ctx, "nope", "", false, q)) },
			func() answer { return pair(remote.HealthService(ctx, "nope", "", false, q)) }},
		{"catalog services",
			func() answer { return pair(local.CatalogServices(ctx, q)) },
			func() answer { return pair(remote.CatalogServices(ctx, q)) }},
		{"catalog nodes",
			func() answer { return pair(local.CatalogNodes(ctx, q)) },
			func() answer { return pair(remote.CatalogNodes(ctx, q)) }},
		{"own node",
			func() answer { return pair(local.CatalogNode(ctx, "", q)) },
			func() answer { return pair(remote.CatalogNode(ctx, "", q)) }},
		{"missing node",
			func() answer { return pair(local.CatalogNode(ctx, "nope", q)) },
			func() answer { return pair(remote.CatalogNode(ctx, "nope", q)) }},
		{"kv get",
			func() answer { return pair(local.KVGet(ctx, "app/a", q)) },
			func() answer { return pair(remote.KVGet(ctx, "app/a", q)) }},
		{"kv get empty value",
			func() answer { return pair(local.KVGet(ctx, "app/b", q)) },
			func() answer { return pair(remote.KVGet(ctx, "app/b", q)) }},
		{"kv get missing",
			func() answer { return pair(local.KVGet(ctx, "app/nope", q)) },
			func() answer { return pair(remote.KVGet(ctx, "app/nope", q)) }},
		{"kv list",
			func() answer { return pair(local.KVList(ctx, "app/", q)) },
			func() answer { return pair(remote.KVList(ctx, "app/", q)) }},
		{"kv list missing",
			func() answer { return pair(local.KVList(ctx, "nope/", q)) },
			func() answer { return pair(remote.KVList(ctx, "nope/", q)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, h := tt.local(), tt.remote()
			if l.Err != nil || h.Err != nil {
				t.Fatalf("errors: in-process %v, HTTP %v", l.Err, h.Err)
			}
			if diff := cmp.Diff(h, l); diff != "" {
				t.Errorf("in-process answer differs from HTTP (-http +in-process):\n%s", diff)
			}
		})
	}
}

// upstreamTemplate is an nginx upstream over a service and a KV key.
const upstreamTemplate = `# {{ key "web/comment" }}
upstream web {
{{- range service "web" }}
  server {{ .Address }}:{{ .Port }}; # {{ .ID }} {{ join "," .Tags }} on {{ .Node }}
{{- end }}
}
`

// TestAgentTemplateMatchesHTTP runs an agent with -template: it renders
// in-process what `cairn template` renders through the HTTP API of the
// same agent, byte for byte.
func TestAgentTemplateMatchesHTTP(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "web.ctmpl")
	if err := os.WriteFile(in, []byte(upstreamTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "web.conf")
	cfg := devConfig()
	cfg.Templates = []string{in + ":" + out}
	r := start(t, cfg)

	if _, err := r.client.KV().Put(&api.KVPair{Key: "web/comment", Value: []byte("rendered by cairn")}, nil); err != nil {
		t.Fatal(err)
	}
	for i, ip := range []string{"127.0.0.11", "127.0.0.12"} {
		err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "web-" + string(rune('1'+i)), Name: "web", Address: ip, Port: 8001 + i, Tags: []string{"v1", "blue"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	node := r.Config().NodeName
	want := "# rendered by cairn\nupstream web {\n" +
		"  server 127.0.0.11:8001; # web-1 blue,v1 on " + node + "\n" +
		"  server 127.0.0.12:8002; # web-2 blue,v1 on " + node + "\n}\n"
	// The agent's runner writes the file in its own goroutine: poll it.
	var inProcess string
	eventually(t, "the agent renders "+out, 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(out)
		inProcess = string(b)
		if err != nil {
			return false, err.Error()
		}
		return inProcess == want, inProcess
	})

	viaHTTP := filepath.Join(dir, "web-http.conf")
	runner, err := template.New(template.Config{
		Templates: []template.TemplateConfig{{Source: in, Destination: viaHTTP}},
		Source:    dialHTTP(t, r),
		Once:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runner.Run(ctx); err != nil {
		t.Fatalf("render through HTTP: %v", err)
	}
	b, err := os.ReadFile(viaHTTP)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != inProcess {
		t.Errorf("rendered through HTTP:\n%s\nin-process:\n%s", b, inProcess)
	}
}

func TestTemplateConfigErrors(t *testing.T) {
	cfg := devConfig()
	cfg.TemplateConfigs = []string{filepath.Join(t.TempDir(), "missing.hcl")}
	_, err := New(cfg, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "-template-config: read config file: open ") {
		t.Errorf("New with a missing -template-config = %v, want a read error naming the flag and the file", err)
	}
}
