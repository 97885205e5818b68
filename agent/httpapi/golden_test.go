package httpapi_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// checkGolden compares got with testdata/<name>.golden, or rewrites the
// file under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v (run go test -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from %s; if the change is intended, rerun with -update and read the diff\ngot:\n%s", name, path, got)
	}
}

// TestAgentSelfGolden pins the shape of /v1/agent/self; the runtime
// stats change from run to run and are left out.
func TestAgentSelfGolden(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	resp, body := ta.do(t, http.MethodGet, "/v1/agent/self", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/agent/self = %d %s", resp.StatusCode, body)
	}
	var self map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &self); err != nil {
		t.Fatalf("decode /v1/agent/self: %v", err)
	}
	delete(self["Stats"], "runtime")
	out, err := json.MarshalIndent(self, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "agent_self", append(out, '\n'))
}
