package template

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"
)

// runner starts a Runner on cfg (Source defaults to src) and returns a
// function that stops it and returns Run's error. Inside a synctest bubble
// the runner's timers run on the bubble's clock.
func runner(t *testing.T, src Source, cfg Config) (*Runner, func() error) {
	t.Helper()
	if cfg.Source == nil {
		cfg.Source = src
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return r, stop
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// settle runs the bubble's clock for a second (views space their queries
// 100ms apart) and waits until every goroutine is idle again.
func settle() {
	time.Sleep(time.Second)
	synctest.Wait()
}

const upstreamTmpl = "upstream web {\n{{- range service \"web\" }}\n  server {{ .Address }}:{{ .Port }};{{ end }}\n}\n"

func webInstance(id string, port int) *api.AgentService {
	return &api.AgentService{ID: id, Service: "web", Port: port}
}

// TestWaitQuiescence: with wait 1s:5s, a change renders after a second
// of calm, and a stream of changes renders at the latest 5s after the
// first of them. All on synctest's clock.
func TestWaitQuiescence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.addNode("n1", "10.0.0.1", nil)
		src.addService("n1", webInstance("w1", 1001), api.HealthPassing)
		dest := filepath.Join(dir, "web.conf")
		runner(t, src, Config{
			Wait:      Wait{Min: time.Second, Max: 5 * time.Second},
			Templates: []TemplateConfig{{Contents: upstreamTmpl, Destination: dest}},
		})
		start := time.Now()
		at := func(d time.Duration) {
			time.Sleep(time.Until(start.Add(d))) // advances synctest's clock
			synctest.Wait()
		}

		at(999 * time.Millisecond)
		if got := readFile(t, dest); got != "<none>" {
			t.Fatalf("at 999ms the file exists already:\n%s", got)
		}
		at(time.Second)
		if got := readFile(t, dest); !strings.Contains(got, "10.0.0.1:1001") {
			t.Fatalf("at 1s: %s, want the upstream with w1", got)
		}

		// A change every 500ms for 8s: the min timer never runs out, so
		// the max (5s after the first change) renders.
		for i := range 16 {
			at(2*time.Second + time.Duration(i)*500*time.Millisecond)
			src.addService("n1", webInstance("x"+string(rune('a'+i)), 2000+i), api.HealthPassing)
			synctest.Wait()
			now := time.Since(start)
			got := readFile(t, dest)
			rendered := strings.Contains(got, ":2000;")
			if now <= 6500*time.Millisecond && rendered {
				t.Fatalf("at %s the burst is rendered already, before max:\n%s", now, got)
			}
			if now >= 7500*time.Millisecond && !rendered {
				t.Fatalf("at %s (max 5s after the first change at 2s) still not rendered:\n%s", now, got)
			}
		}
	})
}

// TestOnce renders every template once, runs each command once, and
// returns; a key that does not exist yet holds the render back.
func TestOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := fixture()
		log := filepath.Join(dir, "commands.log")
		_, stop := runner(t, src, Config{
			Once: true,
			Wait: Wait{Min: time.Hour, Max: time.Hour}, // -once ignores waits
			Templates: []TemplateConfig{
				{Contents: upstreamTmpl, Destination: filepath.Join(dir, "a"), Command: "echo reload >> " + log},
				{Contents: `{{ key "later" }}`, Destination: filepath.Join(dir, "b"), Command: "echo reload >> " + log},
			},
		})
		settle()
		if got := readFile(t, filepath.Join(dir, "b")); got != "<none>" {
			t.Fatalf("b rendered before its key exists: %q", got)
		}
		src.putKV("later", "now")
		settle()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if got := readFile(t, filepath.Join(dir, "b")); got != "now" {
			t.Errorf("b = %q, want %q", got, "now")
		}
		if got := readFile(t, log); got != "reload\n" {
			t.Errorf("commands ran: %q, want one reload (a and b share it)", got)
		}
	})
}

// TestOnceReturnsRunEnd: -once makes Run return by itself, with the
// error of a failing command.
func TestOnceErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := fixture()
		r, err := New(Config{Source: src, Once: true, Templates: []TemplateConfig{
			{Contents: `{{ key "app/name" }}`, Destination: filepath.Join(dir, "a"), Command: "echo oops >&2; exit 3"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		want := `command "echo oops >&2; exit 3" (after (dynamic) changed) exited with status 3: oops`
		if err == nil || err.Error() != want {
			t.Errorf("Run = %v, want %s", err, want)
		}
		if s := r.Stats(); s.Renders != 1 || s.Commands != 1 || s.CommandFailures != 1 {
			t.Errorf("Stats = %+v, want 1 render, 1 command, 1 failure", s)
		}
	})
}

// TestCheckFailureKeepsFile: a result the check refuses does not stay
// (the previous file is back, same inode), its command does not run, the
// error is counted; the next good result goes through.
func TestCheckFailureKeepsFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("conf", "good 1")
		dest := filepath.Join(dir, "app.conf")
		log := filepath.Join(dir, "commands.log")
		r, _ := runner(t, src, Config{Templates: []TemplateConfig{{
			Contents:    `{{ key "conf" }}`,
			Destination: dest,
			Check:       `grep -q good "$CAIRN_TEMPLATE_FILE" || { echo "config test failed: no good in $CAIRN_TEMPLATE_FILE" >&2; exit 1; }`,
			Command:     "echo reload >> " + log,
			Backup:      true,
		}}})
		settle()
		if got := readFile(t, dest); got != "good 1" {
			t.Fatalf("first render: %q", got)
		}
		before, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}

		src.putKV("conf", "bad")
		settle()
		if got := readFile(t, dest); got != "good 1" {
			t.Errorf("after a refused result the file holds %q, want the previous %q", got, "good 1")
		}
		after, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) {
			t.Errorf("the previous file was not put back (a different inode)")
		}
		if got := readFile(t, log); got != "reload\n" {
			t.Errorf("commands after the refused result: %q, want only the first reload", got)
		}
		if s := r.Stats(); s.CheckFailures != 1 || s.Renders != 1 {
			t.Errorf("Stats = %+v, want 1 check failure, 1 render", s)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("left in the directory: %v, want app.conf and commands.log", names)
		}

		src.putKV("conf", "good 2")
		settle()
		if got := readFile(t, dest); got != "good 2" {
			t.Errorf("the next good result: %q, want %q", got, "good 2")
		}
		if got := readFile(t, dest+".bak"); got != "good 1" {
			t.Errorf("backup = %q, want the previous %q", got, "good 1")
		}
		if got := readFile(t, log); got != "reload\nreload\n" {
			t.Errorf("commands: %q, want two reloads", got)
		}
	})
}

// TestCheckFailureMessage: with -once the refusal is Run's error, which
// says what refused it, what was kept, and the check's first line.
func TestCheckFailureMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		dest := writeFile(t, filepath.Join(dir, "web.conf"), "old\n")
		src := newFakeSource()
		src.putKV("conf", "new")
		r, err := New(Config{Source: src, Once: true, Templates: []TemplateConfig{{
			Source:      writeFile(t, filepath.Join(dir, "web.ctmpl"), `{{ key "conf" }}`),
			Destination: dest,
			Check:       `echo 'nginx: [emerg] unknown directive "bogus" in web.conf:1' >&2; echo 'nginx: configuration file test failed' >&2; exit 1`,
			Command:     "touch " + filepath.Join(dir, "reloaded"),
		}}})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		want := "render " + filepath.Join(dir, "web.ctmpl") + `: echo 'nginx: [emerg] unknown directive "bogus" in web.conf:1' >&2; echo 'nginx: configuration file test failed' >&2; exit 1 rejected the result (exited with status 1), kept the previous ` + dest + `: nginx: [emerg] unknown directive "bogus" in web.conf:1`
		if err == nil || err.Error() != want {
			t.Errorf("Run = %v\nwant %s", err, want)
		}
		if !errors.Is(err, ErrCheckFailed) {
			t.Errorf("errors.Is(%v, ErrCheckFailed) = false", err)
		}
		if got := readFile(t, dest); got != "old\n" {
			t.Errorf("file = %q, want the old one", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "reloaded")); err == nil {
			t.Errorf("the command ran after the check failed")
		}
	})
}

// TestCommandsDedup: templates that change together run a command they
// share once, and each distinct command once, in template order.
func TestCommandsDedup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("v", "1")
		log := filepath.Join(dir, "commands.log")
		tmpl := func(name, cmd string) TemplateConfig {
			return TemplateConfig{Contents: name + `={{ key "v" }}`, Destination: filepath.Join(dir, name), Command: cmd}
		}
		runner(t, src, Config{Templates: []TemplateConfig{
			tmpl("a", "echo reload-nginx >> "+log),
			tmpl("b", "echo reload-haproxy >> "+log),
			tmpl("c", "echo reload-nginx >> "+log),
			tmpl("d", ""),
		}})
		settle()
		src.putKV("v", "2")
		settle()
		want := "reload-nginx\nreload-haproxy\nreload-nginx\nreload-haproxy\n"
		if got := readFile(t, log); got != want {
			t.Errorf("commands:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestRenderOnlyOnChange: data a template does not read, or data that
// gives the same output, writes nothing and runs no command.
func TestRenderOnlyOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := fixture()
		dest := filepath.Join(dir, "web.conf")
		log := filepath.Join(dir, "commands.log")
		r, _ := runner(t, src, Config{Templates: []TemplateConfig{
			{Contents: upstreamTmpl, Destination: dest, Command: "echo reload >> " + log},
		}})
		settle()
		first, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}

		src.putKV("unrelated", "x")                                                                  // another dependency
		src.addService("node1", &api.AgentService{ID: "web-z", Service: "web", Port: 1}, "critical") // not passing: same output
		src.update(func() {})                                                                        // nothing at all
		settle()
		now, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(first, now) || !now.ModTime().Equal(first.ModTime()) {
			t.Errorf("the file was rewritten without a change to its output")
		}
		if got := readFile(t, log); got != "reload\n" {
			t.Errorf("commands: %q, want the first reload only", got)
		}
		if s := r.Stats(); s.Renders != 1 || s.Dependencies != 1 {
			t.Errorf("Stats = %+v, want 1 render of 1 dependency", s)
		}
	})
}

// TestAtomicWritePerms: a write replaces the file (readers of the old one
// keep it whole), keeps the permissions of the old file, or applies
// perms, or 0644 for a new file.
func TestAtomicWritePerms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("v", "new contents")
		kept := writeFile(t, filepath.Join(dir, "kept"), "old contents")
		if err := os.Chmod(kept, 0o600); err != nil {
			t.Fatal(err)
		}
		old, err := os.Open(kept)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		set := writeFile(t, filepath.Join(dir, "set"), "old")
		created := filepath.Join(dir, "sub", "dir", "created")
		syscall.Umask(0o077) // 0644 must come from cairn, not the umask
		runner(t, src, Config{Templates: []TemplateConfig{
			{Contents: `{{ key "v" }}`, Destination: kept},
			{Contents: `{{ key "v" }}`, Destination: set, Perms: 0o640},
			{Contents: `{{ key "v" }}`, Destination: created},
		}})
		settle()
		for path, mode := range map[string]os.FileMode{kept: 0o600, set: 0o640, created: 0o644} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != mode {
				t.Errorf("%s: mode %v, want %v", filepath.Base(path), st.Mode().Perm(), mode)
			}
			if got := readFile(t, path); got != "new contents" {
				t.Errorf("%s = %q", filepath.Base(path), got)
			}
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(old); err != nil || buf.String() != "old contents" {
			t.Errorf("a reader of the old file sees %q, %v: the file was changed in place, not replaced", buf.String(), err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 3 {
			t.Errorf("%d entries in the directory, want 3 (no temporary files left)", len(entries))
		}
	})
}

// TestDry prints what would be written and writes nothing.
func TestDry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		var out bytes.Buffer
		dest := filepath.Join(dir, "web.conf")
		_, stop := runner(t, fixture(), Config{Once: true, Dry: true, DryOutput: &out, Templates: []TemplateConfig{
			{Contents: upstreamTmpl, Destination: dest, Command: "touch " + filepath.Join(dir, "ran"), Check: "exit 1"},
		}})
		settle()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		want := "> " + dest + "\nupstream web {\n  server 10.0.0.1:8080;\n  server 10.0.0.1:8081;\n  server 10.1.0.2:8080;\n}\n"
		if out.String() != want {
			t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("-dry left %d files", len(entries))
		}
	})
}

// TestQueryErrorsRetried: a failing Source is retried with back-off and
// the template renders once it answers.
func TestQueryErrorsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("k", "v")
		src.failNext(3)
		dest := filepath.Join(dir, "out")
		r, _ := runner(t, src, Config{Templates: []TemplateConfig{{Contents: `{{ key "k" }}`, Destination: dest}}})
		start := time.Now()
		synctest.Wait()
		for readFile(t, dest) == "<none>" {
			if time.Since(start) > time.Minute {
				t.Fatal("not rendered a minute after the source recovered")
			}
			time.Sleep(100 * time.Millisecond) // synctest's clock: the back-off
			synctest.Wait()
		}
		// 250ms + 500ms + 1s of back-off.
		if took := time.Since(start); took < 1750*time.Millisecond || took > 2*time.Second {
			t.Errorf("rendered after %s, want the back-off of 3 failures (1.75s)", took)
		}
		if s := r.Stats(); s.QueryErrors != 3 {
			t.Errorf("QueryErrors = %d, want 3", s.QueryErrors)
		}
	})
}

// TestViewsFollowTheTemplate: a dependency read only on one branch is
// watched only while the template takes that branch.
func TestViewsFollowTheTemplate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("mode", "a")
		src.putKV("a", "from a")
		src.putKV("b", "from b")
		dest := filepath.Join(dir, "out")
		r, _ := runner(t, src, Config{Templates: []TemplateConfig{{
			Contents:    `{{ if eq (key "mode") "a" }}{{ key "a" }}{{ else }}{{ key "b" }}{{ end }}`,
			Destination: dest,
		}}})
		settle()
		if got := readFile(t, dest); got != "from a" {
			t.Fatalf("out = %q", got)
		}
		src.putKV("mode", "b")
		settle()
		if got := readFile(t, dest); got != "from b" {
			t.Fatalf("out = %q", got)
		}
		if n := r.Stats().Dependencies; n != 2 {
			t.Errorf("watching %d dependencies, want 2 (mode and b)", n)
		}
		if n := src.waiting(); n != 2 {
			t.Errorf("%d queries blocked at the source, want 2", n)
		}
	})
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.ctmpl"), "ok\n{{ range service \"web\" }\n")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no source", cfg: Config{Templates: []TemplateConfig{{Contents: "x", Destination: "y"}}}, want: "template: Config.Source is nil; pass the agent's in-process source or an HTTPSource"},
		{name: "no templates", cfg: Config{Source: newFakeSource()}, want: "template: no templates; give at least one -template or a template {} block in -config"},
		{name: "no destination", cfg: Config{Source: newFakeSource(), Templates: []TemplateConfig{{Source: "in.ctmpl"}}}, want: `template in.ctmpl has no destination; use -template "in.ctmpl:<destination>" (or -dry to print it)`},
		{name: "same destination", cfg: Config{Source: newFakeSource(), Templates: []TemplateConfig{{Contents: "a", Destination: "x"}, {Contents: "b", Destination: "x"}}}, want: "templates (dynamic) and (dynamic) both render to x; give each its own destination"},
		{name: "missing file", cfg: Config{Source: newFakeSource(), Templates: []TemplateConfig{{Source: filepath.Join(dir, "nope.ctmpl"), Destination: "x"}}}, want: "read template: open " + filepath.Join(dir, "nope.ctmpl") + ": no such file or directory"},
		{name: "syntax error", cfg: Config{Source: newFakeSource(), Templates: []TemplateConfig{{Source: bad, Destination: "x"}}}, want: "parse " + bad + `:2:24: unexpected "}" in operand`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestErrorWhileDataIsMissing: an execution that fails while data is
// missing waits for the data; one that fails with all its data is an
// error (Run's, with -once), named by file:line:col.
func TestErrorWhileDataIsMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		dest := filepath.Join(dir, "out")
		tmpl := writeFile(t, filepath.Join(dir, "second.ctmpl"), "second:\n  {{ index (split \",\" (key \"list\")) 1 }}")
		_, stop := runner(t, src, Config{Once: true, Templates: []TemplateConfig{{Source: tmpl, Destination: dest}}})
		settle()
		src.putKV("list", "a,b")
		settle()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if got := readFile(t, dest); got != "second:\n  b" {
			t.Errorf("out = %q", got)
		}

		src.putKV("list", "a")
		r, err := New(Config{Source: src, Once: true, Templates: []TemplateConfig{{Source: tmpl, Destination: dest}}})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		want := "render " + tmpl + `:2:5: at <index (split "," (key "list")) 1>: error calling index: reflect: slice index out of range`
		if err == nil || err.Error() != want {
			t.Errorf("Run = %v\nwant %s", err, want)
		}
	})
}

// TestWaitIgnoresSameOutput: new data that renders the same output does
// not extend the quiet period (the index of a check changing, say).
func TestWaitIgnoresSameOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		src := newFakeSource()
		src.putKV("v", "1")
		src.putKV("noise", "0")
		dest := filepath.Join(dir, "out")
		runner(t, src, Config{
			Wait:      Wait{Min: time.Second, Max: 10 * time.Second},
			Templates: []TemplateConfig{{Contents: `{{ key "v" }}{{ if keyExists "noise" }}{{ end }}`, Destination: dest}},
		})
		time.Sleep(2 * time.Second)
		synctest.Wait()
		start := time.Now()
		src.putKV("v", "2")
		var renderedAt time.Duration
		for i := range 6 {
			time.Sleep(300 * time.Millisecond)
			src.putKV("noise", strconv.Itoa(i)) // new data, same output
			synctest.Wait()
			if renderedAt == 0 && readFile(t, dest) == "2" {
				renderedAt = time.Since(start)
			}
		}
		if renderedAt == 0 || renderedAt > 1200*time.Millisecond {
			t.Errorf("rendered after %s (0: not within 1.8s); the noise extended the 1s wait", renderedAt)
		}
	})
}
