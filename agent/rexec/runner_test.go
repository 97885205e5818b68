package rexec

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// TestHandle runs jobs through a real kv server and reads back what the
// CLI would: the ack, the output chunks in order (none above 4 KiB) and
// the exit code, all locked by the job's session.
func TestHandle(t *testing.T) {
	tests := []struct {
		name   string
		spec   Spec
		output string
		code   string
	}{
		{"shell command", Spec{Command: "echo hi; exit 3"}, "hi\n", "3"},
		{"args, no shell", Spec{Args: []string{"printf", "%s", "a b"}}, "a b", "0"},
		{"script", Spec{Script: []byte("#!/bin/sh\necho script\n")}, "script\n", "0"},
		{"output over 4 KiB", Spec{Command: "head -c 10000 /dev/zero | tr '\\0' x"}, strings.Repeat("x", 10000), "0"},
		{"missing program", Spec{Args: []string{"/nonexistent/prog"}}, "", "255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := kvtest.NewServer(t)
			sid, err := srv.CreateSession(ctx, kv.Session{Name: "Remote Exec", Behavior: "delete", TTL: "15s"})
			if err != nil {
				t.Fatal(err)
			}
			tc.spec.Wait = time.Minute
			job, _ := json.Marshal(tc.spec)
			if ok, err := srv.Apply(ctx, kv.Op{Verb: kv.VerbLock, Key: "_rexec/" + sid + "/job", Value: job, Session: sid}); err != nil || !ok {
				t.Fatalf("store the job: %v, %v", ok, err)
			}
			r, err := New(Config{Node: "n1", Store: srv})
			if err != nil {
				t.Fatal(err)
			}
			payload, _ := json.Marshal(Event{Prefix: "_rexec", Session: sid})
			r.Handle(ctx, payload)

			_, entries, err := srv.List(ctx, kv.QueryOptions{}, "_rexec/"+sid+"/n1/")
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			var keys []string
			code := ""
			for _, e := range entries {
				keys = append(keys, strings.TrimPrefix(e.Key, "_rexec/"+sid+"/n1/"))
				if e.Session != sid {
					t.Errorf("%s not locked by the job's session", e.Key)
				}
				switch {
				case strings.HasPrefix(e.Key, "_rexec/"+sid+"/n1/out/"):
					if len(e.Value) > outputSize {
						t.Errorf("%s: %d bytes, more than %d", e.Key, len(e.Value), outputSize)
					}
					out.Write(e.Value)
				case strings.HasSuffix(e.Key, "/exit"):
					code = string(e.Value)
				}
			}
			if keys[0] != "ack" || code != tc.code || out.String() != tc.output {
				t.Errorf("keys %v, exit %q, output %q; want ack first, exit %q, output %q", keys, code, trim(out.String()), tc.code, trim(tc.output))
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s... (%d bytes)", s[:40], len(s))
	}
	return s
}
