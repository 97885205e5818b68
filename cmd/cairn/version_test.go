package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent"
)

func TestVersionOutput(t *testing.T) {
	v := versionInfo{Version: "1.2.3", Revision: "0123456789abcdef", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	tests := []struct {
		golden string
		v      versionInfo
		json   bool
	}{
		{"version_pretty", v, false},
		{"version_json", v, true},
		{"version_pretty_norev", versionInfo{Version: "1.2.3", GoVersion: "go1.26.8", Platform: "linux/arm64"}, false},
	}
	for _, tt := range tests {
		var out strings.Builder
		printVersion(&out, tt.v, tt.json)
		checkGolden(t, tt.golden, out.String())
	}
}

// The command's flags select the format; the JSON is this binary's.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"-json"}, {"-format=json"}} {
		var stdout, stderr strings.Builder
		if code := run(append([]string{"version"}, args...), strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("cairn version %v = exit %d, stderr %q", args, code, stderr.String())
		}
		var got versionInfo
		if err := json.Unmarshal([]byte(stdout.String()), &got); err != nil {
			t.Fatalf("cairn version %v printed %q, not JSON: %v", args, stdout.String(), err)
		}
		want := versionInfo{Version: agent.Version, Revision: got.Revision, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
		if got != want {
			t.Errorf("cairn version %v = %+v, want %+v", args, got, want)
		}
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"version", "-format=yaml"}, strings.NewReader(""), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `Invalid format "yaml"`) {
		t.Errorf("cairn version -format=yaml = exit %d, stderr %q; want exit 1 naming the format", code, stderr.String())
	}
}
