package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent"
)

// devAgent runs an in-process -dev agent on free ports until the test
// ends and returns its HTTP address once it has a leader.
func devAgent(t *testing.T) string {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.Ports = agent.Ports{HTTP: 0, DNS: -1, SerfLAN: 0, Server: 0}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent did not start: %v", err)
	}
	addr := a.HTTPAddr().String()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		leader, err := c.Status().Leader()
		if err == nil && leader != "" {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 15s: %q, %v", leader, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API: the leader is in Raft's goroutines
	}
}

// TestKVCommands runs `cairn kv` steps in order against one agent and
// checks their exact output, which is consul kv's.
func TestKVCommands(t *testing.T) {
	addr := devAgent(t)
	t.Setenv("CONSUL_HTTP_ADDR", addr) // the env var, as consul reads it
	dir := t.TempDir()
	valueFile := write(t, dir, "value.txt", "from a file")

	steps := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "put", args: []string{"put", "app/db/host", "10.0.0.9"},
			wantOut: "Success! Data written to: app/db/host\n"},
		{name: "put with flags", args: []string{"put", "-flags=42", "app/db/port", "5432"},
			wantOut: "Success! Data written to: app/db/port\n"},
		{name: "put from file", args: []string{"put", "app/motd", "@" + valueFile},
			wantOut: "Success! Data written to: app/motd\n"},
		{name: "put from stdin", args: []string{"put", "app/stdin", "-"}, stdin: "piped\n",
			wantOut: "Success! Data written to: app/stdin\n"},
		{name: "put empty", args: []string{"put", "app/flag"},
			wantOut: "Success! Data written to: app/flag\n"},
		{name: "put base64", args: []string{"put", "-base64", "app/b64", "aGk="},
			wantOut: "Success! Data written to: app/b64\n"},
		{name: "get", args: []string{"get", "app/db/host"}, wantOut: "10.0.0.9\n"},
		{name: "get leading slash", args: []string{"get", "/app/stdin"}, wantOut: "piped\n\n"},
		{name: "get base64", args: []string{"get", "-base64", "app/b64"}, wantOut: "aGk=\n"},
		{name: "get missing", args: []string{"get", "app/nope"}, wantCode: 1,
			wantErr: "Error! No key exists at: app/nope\n"},
		{name: "get no key", args: []string{"get"}, wantCode: 1, wantErr: "Error! Missing KEY argument\n"},
		{name: "get recurse", args: []string{"get", "-recurse", "app/db"},
			wantOut: "app/db/host:10.0.0.9\napp/db/port:5432\n"},
		{name: "get keys", args: []string{"get", "-keys", "app/"},
			wantOut: "app/b64\napp/db/\napp/flag\napp/motd\napp/stdin\n"},
		{name: "get keys no separator", args: []string{"get", "-keys", "-separator=", "app/db"},
			wantOut: "app/db/host\napp/db/port\n"},
		{name: "cas without index", args: []string{"put", "-cas", "app/db/host", "x"}, wantCode: 1,
			wantErr: "Must specify -modify-index with -cas!\n"},
		{name: "cas stale index", args: []string{"put", "-cas", "-modify-index=1", "app/db/host", "x"}, wantCode: 1,
			wantErr: "Error! Did not write to app/db/host: CAS failed\n"},
		{name: "acquire without session", args: []string{"put", "-acquire", "app/lock"}, wantCode: 1,
			wantErr: "Error! Missing -session (required with -acquire and -release)\n"},
		{name: "put too many args", args: []string{"put", "a", "b", "c"}, wantCode: 1,
			wantErr: "Error! Too many arguments (expected 1 or 2, got 3)\n"},
		{name: "export", args: []string{"export", "app/db"},
			wantOut: "[\n\t{\n\t\t\"key\": \"app/db/host\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"MTAuMC4wLjk=\"\n\t},\n\t{\n\t\t\"key\": \"app/db/port\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"NTQzMg==\"\n\t}\n]\n"},
		{name: "export empty", args: []string{"export", "nothing/here"}, wantOut: "[]\n"},
		{name: "delete needs key", args: []string{"delete"}, wantCode: 1, wantErr: "Error! Missing KEY argument\n"},
		{name: "delete cas and recurse", args: []string{"delete", "-cas", "-modify-index=3", "-recurse", "app"}, wantCode: 1,
			wantErr: "Cannot specify both -cas and -recurse!\n"},
		{name: "delete index without cas", args: []string{"delete", "-modify-index=3", "app"}, wantCode: 1,
			wantErr: "Cannot specify -modify-index without -cas!\n"},
		{name: "delete one", args: []string{"delete", "app/flag"}, wantOut: "Success! Deleted key: app/flag\n"},
		{name: "delete tree", args: []string{"delete", "-recurse", "app/db"},
			wantOut: "Success! Deleted keys with prefix: app/db\n"},
		{name: "tree is gone", args: []string{"get", "-recurse", "app/db"}},
		{name: "import from stdin", args: []string{"import", "-"},
			stdin:   `[{"key":"app/db/host","flags":0,"value":"MTAuMC4wLjk="},{"key":"app/db/port","flags":42,"value":"NTQzMg=="}]`,
			wantOut: "Imported: app/db/host\nImported: app/db/port\n"},
		{name: "imported", args: []string{"get", "-detailed", "app/db/port"},
			wantOut: "CreateIndex      %\nFlags            42\nKey              app/db/port\nLockIndex        0\nModifyIndex      %\nSession          -\nValue            5432\n"},
		{name: "import bad json", args: []string{"import", "[{"}, wantCode: 1,
			wantErr: "Cannot unmarshal data: unexpected end of JSON input\n"},
		{name: "import bad base64", args: []string{"import", `[{"key":"k","value":"!!"}]`}, wantCode: 1,
			wantErr: "Error base 64 decoding value for key k: illegal base64 data at input byte 0\n"},
		{name: "import no data", args: []string{"import"}, wantCode: 1, wantErr: "Error! Missing DATA argument\n"},
		{name: "unreachable agent", args: []string{"get", "-http-addr=127.0.0.1:1", "k"}, wantCode: 1,
			wantErr: "Error querying cairn agent: Get \"http://127.0.0.1:1/v1/kv/k\": dial tcp 127.0.0.1:1: connect: connection refused\n"},
	}
	for _, s := range steps {
		var stdout, stderr strings.Builder
		code := run(append([]string{"kv"}, s.args...), strings.NewReader(s.stdin), &stdout, &stderr)
		if code != s.wantCode || !matches(stdout.String(), s.wantOut) || stderr.String() != s.wantErr {
			t.Errorf("%s: cairn kv %s =\n exit %d\n stdout %q\n stderr %q\nwant\n exit %d\n stdout %q\n stderr %q",
				s.name, strings.Join(s.args, " "), code, stdout.String(), stderr.String(), s.wantCode, s.wantOut, s.wantErr)
		}
	}
}

// matches compares got with want, where each % in want stands for a
// number (indexes differ from run to run).
func matches(got, want string) bool {
	parts := strings.Split(want, "%")
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	got = got[len(parts[0]):]
	for _, p := range parts[1:] {
		i := 0
		for i < len(got) && got[i] >= '0' && got[i] <= '9' {
			i++
		}
		if i == 0 || !strings.HasPrefix(got[i:], p) {
			return false
		}
		got = got[i+len(p):]
	}
	return got == ""
}
