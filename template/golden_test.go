package template

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// checkGolden compares got with testdata/<name>.golden, or rewrites it
// under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("output differs from %s; if the change is intended, rerun with -update and read the diff\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

var epoch = func() time.Time { return time.Unix(0, 0) }

// renderOnce renders contents against src the way the runner does, but
// in the test's goroutine: execute, fetch what is missing (no blocking),
// execute again, until the template is complete.
func renderOnce(t *testing.T, src Source, name, contents string) string {
	t.Helper()
	tm, err := parse(name, contents, parseOptions{Now: epoch})
	if err != nil {
		t.Fatal(err)
	}
	data := map[dependency]any{}
	recall := func(d dependency) (any, bool) {
		v, ok := data[d]
		return v, ok
	}
	w := &watcher{src: src}
	for range 10 {
		res, err := tm.execute(recall)
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete() {
			return string(res.Output)
		}
		for d := range res.missing {
			if _, ok := data[d]; ok {
				t.Fatalf("%s: %s has data but the template still misses it", name, d)
			}
			v, _, err := w.fetch(context.Background(), d, QueryOptions{})
			if err != nil {
				t.Fatalf("%s: fetch %s: %v", name, d, err)
			}
			if v == nil && d.kind == depKVBlock {
				t.Fatalf("%s: key of %s does not exist", name, d)
			}
			data[d] = v
		}
	}
	t.Fatalf("%s: still missing data after 10 rounds", name)
	return ""
}

// TestGolden renders every testdata/*.ctmpl against the fixed catalog and
// KV, once through the in-memory Source and once through HTTPSource
// talking to the same data over Consul's HTTP API: both must give the
// golden file, byte for byte.
func TestGolden(t *testing.T) {
	t.Setenv("CAIRN_TEST_UNSET_VARIABLE", "")
	os.Unsetenv("CAIRN_TEST_UNSET_VARIABLE")
	files, err := filepath.Glob("testdata/*.ctmpl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in testdata: %v", err)
	}
	src := fixture()
	srv := startConsulServer(t, src, true)
	httpSrc, err := DialHTTP(context.Background(), HTTPConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer httpSrc.Close()

	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".ctmpl")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := renderOnce(t, src, file, string(b))
			checkGolden(t, name, got)
			if overHTTP := renderOnce(t, httpSrc, file, string(b)); overHTTP != got {
				t.Errorf("over HTTP the output differs from in-memory:\nHTTP:\n%s\nin-memory:\n%s", overHTTP, got)
			}
		})
	}
}
