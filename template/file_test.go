package template

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileFunction: file() renders a file's contents and renders again
// when the file is written or replaced (inotify on Linux).
func TestFileFunction(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	writeFile(t, in, "one")
	dest := filepath.Join(dir, "out")
	done := make(signal, 4)
	runner(t, newFakeSource(), Config{
		CommandOutput: done,
		Templates:     []TemplateConfig{{Contents: `[{{ file "` + in + `" }}]`, Destination: dest, Command: "echo rendered"}},
	})
	awaitContent := func(want string) {
		t.Helper()
		for range 3 {
			done.await(t, "rendered")
			if readFile(t, dest) == want {
				return
			}
		}
		t.Fatalf("out = %q, want %q", readFile(t, dest), want)
	}
	awaitContent("[one]")
	writeFile(t, in, "two")
	awaitContent("[two]")
	writeFile(t, filepath.Join(dir, "next"), "three")
	if err := os.Rename(filepath.Join(dir, "next"), in); err != nil {
		t.Fatal(err)
	}
	awaitContent("[three]")
}
