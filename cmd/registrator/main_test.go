package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func noEnv(string) string { return "" }

// TestCommandLine pins the text and exit status of -h, -version and every
// command-line mistake against testdata/<case>.golden (stdout, then
// stderr).
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"-h"}, 0},
		{"version", []string{"--version"}, 0},
		{"bad-flag", []string{"-foo", "consul://"}, 2},
		{"missing-uri", []string{"-internal"}, 2},
		{"extra-args", []string{"consul://localhost:8500", "-internal"}, 2},
		{"bad-scheme", []string{"etcd://localhost:2379/x"}, 2},
		{"ttl-without-refresh", []string{"-ttl", "30", "consul://"}, 2},
		{"ttl-not-above-refresh", []string{"-ttl", "10", "-ttl-refresh", "10", "consul://"}, 2},
		{"bad-deregister", []string{"-deregister", "never", "consul://"}, 2},
		{"bad-retry-interval", []string{"-retry-interval", "0", "consul://"}, 2},
		{"bad-ip", []string{"-ip", "myhost", "consul://127.0.0.1:1"}, 2},
		{"consulkv-without-prefix", []string{"consulkv://127.0.0.1:1"}, 1},
		{"consulkv-unix-without-prefix", []string{"consulkv-unix:///run/consul.sock"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, &stdout, &stderr, noEnv)
			if code != tc.code {
				t.Errorf("registrator %s: exit %d, want %d\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, stderr.String())
			}
			got := "$ registrator " + strings.Join(tc.args, " ") + "\n-- stdout --\n" + stdout.String() + "-- stderr --\n" + scrubLog(stderr.String())
			golden(t, filepath.Join("testdata", tc.name+".golden"), got)
		})
	}
}

// scrubLog drops slog's time= field, which changes each run.
func scrubLog(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "time=") {
			_, l, _ = strings.Cut(l, " ")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, d)
	}
}

// TestFlagsMapToConfig pins each flag's Config field and unit.
func TestFlagsMapToConfig(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parse([]string{"-ip", "10.0.0.5", "-internal", "-explicit", "-useIpFromLabel", "ip", "-tags", "a,b",
		"-ttl", "30", "-ttl-refresh", "10", "-resync", "60", "-deregister", "on-success", "-cleanup",
		"-retry-attempts", "-1", "-retry-interval", "500", "consul://127.0.0.1:8500"}, &stderr, noEnv)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, stderr.String())
	}
	want := registrator.Config{HostIP: "10.0.0.5", Internal: true, Explicit: true, UseIPFromLabel: "ip", Tags: "a,b",
		TTL: 30 * time.Second, TTLRefresh: 10 * time.Second, Resync: time.Minute, Deregister: "on-success", Cleanup: true,
		RetryAttempts: -1, RetryInterval: 500 * time.Millisecond}
	if d := cmp.Diff(want, o.cfg); d != "" {
		t.Errorf("Config (-want +got):\n%s", d)
	}
	if o.dockerHost != "unix:///var/run/docker.sock" || o.uri != "consul://127.0.0.1:8500" {
		t.Errorf("dockerHost, uri = %q, %q; want the engine's usual socket and the URI", o.dockerHost, o.uri)
	}
	o, _ = parse([]string{"consul://"}, &stderr, func(k string) string {
		if k == "DOCKER_HOST" {
			return "tcp://127.0.0.1:2375"
		}
		return ""
	})
	if o.dockerHost != "tcp://127.0.0.1:2375" {
		t.Errorf("with DOCKER_HOST set, dockerHost = %q", o.dockerHost)
	}
}

// TestUnreachableRegistry: with -retry-attempts 1 the command gives up
// with the registry's address in the error, exit 1.
func TestUnreachableRegistry(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"-retry-attempts", "1", "-retry-interval", "10", "consul://127.0.0.1:1"}, &stdout, &stderr, noEnv)
	if code != 1 || !strings.Contains(stderr.String(), "registry not reachable after 2 attempt(s) 10ms apart") ||
		!strings.Contains(stderr.String(), "127.0.0.1:1") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
