package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// `cairn debug` is `consul debug`: one archive with what a bug report
// needs — the agent's self description (config and stats), members,
// host, metrics (JSON and Prometheus), goroutines, heap, and the log at
// debug level, a CPU profile and an execution trace for -duration.

const debugHelp = `
Usage: cairn debug [options]

  Captures the agent's state into one archive for a bug report: agent
  configuration and stats, members, host, metrics, goroutine and heap
  profiles, and for -duration the debug log, a CPU profile and an
  execution trace (those two need enable_debug on the agent, or ACLs and
  a token with operator read, as Consul's). Nothing secret is captured:
  the agent's API does not show the gossip key or tokens.
`

func runDebug(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	fs := c.flagSet("cairn debug", debugHelp, false)
	output := fs.String("output", "", `Archive to write; default "cairn-debug-<unix time>.tar.gz" in the current directory.`)
	duration := fs.Duration("duration", 10*time.Second, "How long to capture the log, the CPU profile and the trace for (at most 5m).")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if !c.noArgs(fs) {
		return 1
	}
	if *duration <= 0 || *duration > 5*time.Minute {
		c.error("-duration=%s is out of range; give a duration above 0 and at most 5m (the agent profiles for at most 5 minutes)", *duration)
		return 1
	}
	if *output == "" {
		*output = fmt.Sprintf("cairn-debug-%d.tar.gz", time.Now().Unix())
	}
	client, ok := c.client()
	if !ok {
		return 1
	}
	files := map[string][]byte{}
	var order []string
	add := func(name string, b []byte) {
		files[name] = b
		order = append(order, name)
	}
	asJSON := func(name string, v any, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		add(name, b)
		return nil
	}
	self, err := client.Agent().Self()
	if err := asJSON("agent.json", self, err); err != nil {
		c.error("Error capturing the agent: %s; is -http-addr an agent?", err)
		return 1
	}
	members, err := client.Agent().Members(false)
	var problems []string
	if err := asJSON("members.json", members, err); err != nil {
		problems = append(problems, err.Error())
	}
	host, err := client.Agent().Host()
	if err := asJSON("host.json", host, err); err != nil {
		problems = append(problems, err.Error())
	}
	metrics, err := client.Agent().Metrics()
	if err := asJSON("metrics.json", metrics, err); err != nil {
		problems = append(problems, err.Error())
	}
	for _, raw := range []struct{ name, path string }{
		{"metrics.prom", "/v1/agent/metrics?format=prometheus"},
		{"goroutine.txt", "/debug/pprof/goroutine?debug=2"},
		{"heap.prof", "/debug/pprof/heap"},
	} {
		b, err := c.rawGet(raw.path, 30*time.Second)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", raw.name, err))
			continue
		}
		add(raw.name, b)
	}

	c.info("Capturing the debug log, a CPU profile and a trace for %s ...", *duration)
	// The profile and the trace run on the agent for the same window as
	// the log, so the three tell of the same seconds.
	type timed struct {
		name string
		b    []byte
		err  error
	}
	captures := []struct{ name, path string }{
		{"profile.prof", "/debug/pprof/profile"},
		{"trace.out", "/debug/pprof/trace"},
	}
	profiles := make(chan timed, len(captures))
	for _, p := range captures {
		go func() {
			b, err := c.rawGet(fmt.Sprintf("%s?seconds=%g", p.path, duration.Seconds()), *duration+30*time.Second)
			profiles <- timed{p.name, b, err}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	lines, err := client.Agent().Monitor("debug", ctx.Done(), nil)
	var logs strings.Builder
	if err != nil {
		problems = append(problems, "agent.log: "+err.Error())
	} else {
	capture:
		for {
			select {
			case <-ctx.Done():
				break capture
			case l, ok := <-lines:
				if !ok {
					break capture
				}
				logs.WriteString(l + "\n")
			}
		}
		add("agent.log", []byte(logs.String()))
	}
	for range captures {
		p := <-profiles
		if p.err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", p.name, p.err))
			continue
		}
		add(p.name, p.b)
	}
	if len(problems) > 0 {
		add("problems.txt", []byte(strings.Join(problems, "\n")+"\n"))
	}
	if err := writeBundle(*output, order, files); err != nil {
		c.error("Error writing %s: %s", *output, err)
		return 1
	}
	for _, p := range problems {
		c.error("Could not capture %s", p)
	}
	c.info("Saved debug archive: %s", *output)
	return 0
}

// rawGet fetches a path of the agent's API as bytes (metrics text and
// profiles are not JSON, which the client's Raw decodes).
func (c *command) rawGet(path string, timeout time.Duration) ([]byte, error) {
	cfg := api.DefaultConfig()
	if c.httpAddr != "" {
		cfg.Address = c.httpAddr
	}
	if c.token != "" {
		cfg.Token = c.token
	}
	base := cfg.Address
	switch {
	case strings.HasPrefix(base, "unix://"):
		return nil, fmt.Errorf("not captured over a unix socket (%s); use an http address", base)
	case !strings.Contains(base, "://"):
		base = cfg.Scheme + "://" + base
	}
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	if cfg.Token != "" {
		req.Header.Set("X-Consul-Token", cfg.Token)
	}
	hc := &http.Client{Timeout: timeout, Transport: cfg.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func writeBundle(path string, order []string, files map[string][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	now := time.Now()
	dir := strings.TrimSuffix(strings.TrimSuffix(path[strings.LastIndex(path, "/")+1:], ".gz"), ".tar")
	for _, name := range order {
		b := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/" + name, Mode: 0o600, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(b); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := gz.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
