package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The script's shape, from a fixed tree (the real tree grows with every
// command; TestCompletionBash checks it through bash).
func TestCompletionScript(t *testing.T) {
	tree := []cmdNode{
		{path: "", subs: []string{"agent", "kv"}},
		{path: "agent", flags: []string{"-data-dir", "-dev"}},
		{path: "kv", subs: []string{"get"}},
		{path: "kv get", flags: []string{"-recurse"}},
	}
	checkGolden(t, "completion_bash", bashCompletion(tree))
}

// The generated script, sourced by a real bash, completes commands,
// subcommands and flags as a user types them.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on PATH")
	}
	var script, stderr strings.Builder
	if code := run([]string{"completion", "bash"}, strings.NewReader(""), &script, &stderr); code != 0 {
		t.Fatalf("cairn completion bash = exit %d: %s", code, stderr.String())
	}
	file := filepath.Join(t.TempDir(), "cairn.bash")
	if err := os.WriteFile(file, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line string // what the user typed; the last word is completed
		want string // COMPREPLY, space-separated
	}{
		{"cairn ag", "agent"},
		{"cairn v", "validate version"},
		{"cairn kv g", "get"},
		{"cairn kv get -re", "-recurse"},
		{"cairn agent -data", "-data-dir -datacenter"},
		{"cairn agent -dev -retry", "-retry-join"},
		{"cairn operator raft l", "list-peers"},
		{"cairn kv put -http-addr 127.0.0.1:8500 -c", "-ca-file -ca-path -cas -client-cert -client-key"},
		{"cairn completion z", "zsh"},
		{"cairn version -", "-format -json"},
	}
	for _, tt := range tests {
		words := strings.Fields(tt.line)
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cairn; echo "${COMPREPLY[*]}"`
		out, err := exec.Command(bash, append([]string{"-c", prog, "bash", file}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash completing %q: %v\n%s", tt.line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("completing %q = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestCompletionZsh(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"completion", "zsh"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("cairn completion zsh = exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "#compdef cairn\n") || !strings.Contains(stdout.String(), "bashcompinit") || !strings.Contains(stdout.String(), "complete -o default -F _cairn cairn") {
		t.Errorf("cairn completion zsh does not load the bash function through bashcompinit:\n%s", stdout.String())
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		out, err := exec.Command(zsh, "-c", `source <(cairn_out="$1"; print -r -- "$cairn_out")`, "zsh", stdout.String()).CombinedOutput()
		if err != nil {
			t.Errorf("zsh cannot load the script: %v\n%s", err, out)
		}
	}
	if code := run([]string{"completion", "fish"}, strings.NewReader(""), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `Unknown shell "fish"`) {
		t.Errorf("cairn completion fish = exit %d, stderr %q; want exit 1 naming the shell", code, stderr.String())
	}
}
