package template

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// instances builds n passing instances of "web" spread over 100 nodes.
func instances(n int) []*api.ServiceEntry {
	out := make([]*api.ServiceEntry, n)
	for i := range out {
		node := &api.Node{ID: fmt.Sprintf("id-%d", i%100), Node: fmt.Sprintf("node%03d", i%100), Address: fmt.Sprintf("10.0.%d.%d", i%100/250, i%100%250+1)}
		out[i] = &api.ServiceEntry{
			Node:    node,
			Service: &api.AgentService{ID: fmt.Sprintf("web-%05d", i), Service: "web", Port: 20000 + i%40000, Tags: []string{"v1", "prod"}},
			Checks:  api.HealthChecks{{Node: node.Node, CheckID: "serfHealth", Status: api.HealthPassing}},
		}
	}
	return out
}

// BenchmarkRenderUpstream10k executes the nginx upstream template over
// 10,000 instances that are in the view already: the cost of one render.
func BenchmarkRenderUpstream10k(b *testing.B) {
	tm, err := parse("upstream.ctmpl", upstreamTmpl, parseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	d, _ := parseHealthService("web")
	data := healthServices(instances(10000), []string{healthPassing}, true)
	recall := func(dependency) (any, bool) { return data, true }
	var size int
	for b.Loop() {
		res, err := tm.execute(recall)
		if err != nil || !res.Complete() {
			b.Fatalf("execute: %v, missing %v", err, res.Missing())
		}
		size = len(res.Output)
	}
	b.ReportMetric(float64(size), "bytes/render")
	_ = d
}

// BenchmarkUpstream10kAnswer turns an answer of 10,000 instances into
// what templates see (filter, address fallback, tag sort, node/ID order)
// and compares it with the previous answer, as a view does on every
// change: the rest of the cost of a change.
func BenchmarkUpstream10kAnswer(b *testing.B) {
	entries := instances(10000)
	prev := healthServices(entries, []string{healthPassing}, true)
	w := newWatcher(nil, slog.New(slog.DiscardHandler), false)
	v := &view{dep: dependency{kind: depHealthService, name: "web"}, data: prev, received: true}
	w.views[v.dep] = v
	for b.Loop() {
		data := healthServices(entries, []string{healthPassing}, true)
		if w.store(v, data) {
			b.Fatal("the same answer counted as new data")
		}
	}
}

// BenchmarkChangeToDisk is the time from a change in the Source (a new
// instance) to the rendered file being renamed into place, without a
// wait: view wake-up, drain, execute, write and fsync. The template lists
// 1,000 instances. Between changes the view is back in its blocking query
// (a view spaces its queries 100ms apart, which a burst of changes would
// measure instead).
func BenchmarkChangeToDisk(b *testing.B) {
	src := newFakeSource()
	src.addNode("n1", "10.0.0.1", nil)
	src.update(func() {
		for i := range 1000 {
			svc := &api.AgentService{ID: fmt.Sprintf("w%d", i), Service: "web", Port: 10000 + i}
			src.services["web"] = append(src.services["web"], &api.ServiceEntry{Node: src.nodes["n1"], Service: svc})
		}
	})
	rendered := make(chan struct{}, 1)
	logger := slog.New(renderedHandler{rendered})
	dest := filepath.Join(b.TempDir(), "web.conf")
	r, err := New(Config{Source: src, Logger: logger, Templates: []TemplateConfig{{Contents: upstreamTmpl, Destination: dest}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-rendered
	src.awaitBlocked(b, 1, 10*time.Second)
	i := 0
	for b.Loop() {
		b.StopTimer()
		src.awaitBlocked(b, 1, 10*time.Second)
		b.StartTimer()
		i++
		svc := &api.AgentService{ID: fmt.Sprintf("new%d", i), Service: "web", Port: 1 + i%60000}
		src.update(func() {
			src.services["web"] = append(src.services["web"], &api.ServiceEntry{Node: src.nodes["n1"], Service: svc})
		})
		select {
		case <-rendered:
		case <-time.After(10 * time.Second):
			b.Fatal("no render within 10s of a change")
		}
	}
	if st, err := os.Stat(dest); err != nil || st.Size() == 0 {
		b.Fatalf("nothing rendered: %v", err)
	}
}

// renderedHandler signals every "rendered" log record.
type renderedHandler struct{ ch chan struct{} }

func (h renderedHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h renderedHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "rendered" {
		h.ch <- struct{}{}
	}
	return nil
}
func (h renderedHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h renderedHandler) WithGroup(string) slog.Handler      { return h }
