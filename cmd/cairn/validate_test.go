package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// cairn validate prints consul validate's answers: "Configuration is
// valid!" and exit 0, or what is wrong (naming the key or flag and the
// file) and exit 1. The golden files hold stdout then stderr.
func TestValidate(t *testing.T) {
	tests := []struct {
		golden   string
		args     []string
		wantCode int
	}{
		{"validate_file", []string{"testdata/validate/server.hcl"}, 0},
		{"validate_dir", []string{"testdata/validate/dir"}, 0},
		{"validate_quiet", []string{"-quiet", "testdata/validate/server.hcl"}, 0},
		// Later sources win, as for cairn agent: the dir's bootstrap_expect 3 over the file's 1.
		{"validate_several", []string{"testdata/validate/server.hcl", "testdata/validate/dir"}, 0},
		{"validate_no_data_dir", []string{"testdata/validate/bad/no-data-dir.hcl"}, 1},
		{"validate_client_bootstrap", []string{"testdata/validate/bad/client-only-bootstrap.hcl"}, 1},
		{"validate_syntax", []string{"testdata/validate/bad/syntax.hcl"}, 1},
		{"validate_missing", []string{"testdata/validate/nothing-here.hcl"}, 1},
		{"validate_no_args", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(append([]string{"validate"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("cairn validate %s = exit %d, want %d (stderr %q)", strings.Join(tt.args, " "), code, tt.wantCode, stderr.String())
			}
			checkGolden(t, filepath.Join("validate", tt.golden), "stdout:\n"+stdout.String()+"stderr:\n"+stderr.String())
		})
	}
}

// An unknown key is named with its file and line (the list of known keys
// after it grows with the config loader, so it is not pinned here).
func TestValidateUnknownKey(t *testing.T) {
	var stdout, stderr strings.Builder
	code := run([]string{"validate", "testdata/validate/bad/unknown-key.hcl"}, strings.NewReader(""), &stdout, &stderr)
	want := `Config validation failed: config file testdata/validate/bad/unknown-key.hcl: line 2: unknown key "bootstrap_expekt"`
	if code != 1 || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("cairn validate unknown-key.hcl = exit %d, stdout %q, stderr %q; want exit 1, stderr starting %q", code, stdout.String(), stderr.String(), want)
	}
}
