package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScript(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, md, want, wantErr string
	}{
		{
			name: "tested blocks only, in order",
			md:   "# T\n```sh test\necho one\n```\n```sh\nnot run\n```\ntext\n```sh test\necho two\n```\n",
			want: "set -euo pipefail\n" + failTrap + "# DIR/a.md:2\necho one\n# DIR/a.md:9\necho two\n",
		},
		{name: "none", md: "```sh\nls\n```\n", wantErr: `DIR/a.md has no "` + "```sh test" + `" blocks to run`},
		{name: "unclosed", md: "```sh test\nls\n", wantErr: `DIR/a.md: the last "` + "```sh test" + `" block is not closed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write("a.md", tt.md)
			got, err := Script(p)
			sub := func(s string) string { return strings.ReplaceAll(s, "DIR", dir) }
			if tt.wantErr != "" {
				if err == nil || err.Error() != sub(tt.wantErr) {
					t.Fatalf("Script = %q, %v; want error %q", got, err, sub(tt.wantErr))
				}
				return
			}
			if err != nil || got != sub(tt.want) {
				t.Fatalf("Script = %q, %v; want %q", got, err, sub(tt.want))
			}
		})
	}
}
