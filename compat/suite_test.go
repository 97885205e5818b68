//go:build compat

package compat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// apiVersion is the consul/api release whose tests run; cairn's go.mod
// must require the same one.
const apiVersion = "v1.34.5"

// suiteFiles are the test files of consul/api about what cairn serves:
// KV, transactions, sessions, locks, semaphores, catalog, health, the
// agent endpoints (members among them), status, snapshots and ACLs.
var suiteFiles = []string{
	"kv_test.go", "txn_test.go", "session_test.go", "lock_test.go", "semaphore_test.go",
	"catalog_test.go", "health_test.go", "agent_test.go", "status_test.go", "snapshot_test.go",
	"acl_test.go",
}

// TestConsulAPISuite copies consul/api (sources and tests) from the
// module cache into a temporary module, puts the consul stand-in and a
// freshly built cairn first on PATH, and runs the tests of suiteFiles.
// It fails when a test that OUT_OF_SCOPE.md does not list fails, and when
// a listed test no longer exists. COMPAT_ALL=1 runs the listed tests too
// (reported, never failing); COMPAT_RUN=regexp narrows the run.
func TestConsulAPISuite(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	outOfScope, err := readOutOfScope("OUT_OF_SCOPE.md")
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	goCmd(t, repo, nil, "build", "-o", filepath.Join(bin, "cairn"), "./cmd/cairn")
	goCmd(t, repo, nil, "build", "-o", filepath.Join(bin, "consul"), "./compat/consulstandin")

	apiDir := strings.TrimSpace(goCmd(t, repo, nil, "list", "-m", "-f", "{{.Version}} {{.Dir}}", "github.com/hashicorp/consul/api"))
	version, dir, _ := strings.Cut(apiDir, " ")
	if version != apiVersion {
		t.Fatalf("go.mod requires consul/api %s; this suite and OUT_OF_SCOPE.md are written for %s: update both together", version, apiVersion)
	}
	if dir == "" {
		goCmd(t, repo, nil, "mod", "download", "github.com/hashicorp/consul/api@"+apiVersion)
		dir = strings.TrimSpace(goCmd(t, repo, nil, "list", "-m", "-f", "{{.Dir}}", "github.com/hashicorp/consul/api"))
	}
	mod := filepath.Join(work, "api")
	copyPackage(t, dir, mod)

	var names []string
	for _, f := range suiteFiles {
		names = append(names, testNames(t, filepath.Join(dir, f))...)
	}
	for name := range outOfScope {
		if !slices.Contains(names, name) {
			t.Errorf("OUT_OF_SCOPE.md lists %s, which no file of the suite declares; remove it", name)
		}
	}
	var run []string
	for _, n := range names {
		if _, skip := outOfScope[n]; skip && os.Getenv("COMPAT_ALL") == "" {
			continue
		}
		if re := os.Getenv("COMPAT_RUN"); re != "" && !regexp.MustCompile(re).MatchString(n) {
			continue
		}
		run = append(run, n)
	}
	if len(run) == 0 {
		t.Fatal("no test selected")
	}

	env := []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"GOFLAGS=-mod=mod", "GOWORK=off",
	}
	parallel := os.Getenv("COMPAT_PARALLEL")
	if parallel == "" {
		parallel = "4"
	}
	// A test that panics ends the test binary, and with it the tests
	// running beside it: those are run again, until every test has an
	// outcome or a run decides none.
	results := map[string]string{}
	outputs := map[string]*strings.Builder{}
	pending := run
	for len(pending) > 0 {
		res, outs, err := goTest(mod, env, parallel, pending)
		if err != nil {
			t.Fatal(err)
		}
		var rest []string
		for _, n := range pending {
			if o := outs[n]; o != nil {
				outputs[n] = o
			}
			if r, ok := res[n]; ok {
				results[n] = r
			} else {
				rest = append(rest, n)
			}
		}
		if len(rest) == len(pending) {
			break // no progress: the binary did not run (its output says why)
		}
		pending = rest
	}

	var passed, failed, skipped, unexpected []string
	for _, n := range run {
		switch results[n] {
		case "pass":
			passed = append(passed, n)
		case "skip":
			skipped = append(skipped, n)
		default:
			failed = append(failed, n)
			if _, listed := outOfScope[n]; !listed {
				unexpected = append(unexpected, n)
			}
		}
	}
	t.Logf("consul/api %s against cairn: %d run, %d passed, %d failed, %d skipped; %d out of scope (OUT_OF_SCOPE.md)",
		apiVersion, len(run), len(passed), len(failed), len(skipped), len(outOfScope))
	for _, n := range failed {
		_, listed := outOfScope[n]
		t.Logf("FAIL %s (out of scope: %v)", n, listed)
	}
	for _, n := range unexpected {
		t.Errorf("%s failed:\n%s", n, tail(outputs[n], 60))
	}
}

// goTest runs the named tests of the module in dir with go test -json and
// returns each top-level test's outcome and output. A test that the run
// did not finish has no outcome.
func goTest(dir string, env []string, parallel string, names []string) (map[string]string, map[string]*strings.Builder, error) {
	cmd := exec.Command("go", "test", "-json", "-count=1", "-timeout=30m", "-parallel="+parallel,
		"-run", "^("+strings.Join(names, "|")+")$", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	results, outputs, readErr := readResults(out)
	waitErr := cmd.Wait()
	if readErr != nil {
		return nil, nil, readErr
	}
	if len(results) == 0 && waitErr != nil {
		return nil, nil, fmt.Errorf("go test in %s: %v\n%s", dir, waitErr, stderr.String())
	}
	return results, outputs, nil
}

// readOutOfScope reads the "- `TestName`: reason" lines of path.
func readOutOfScope(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile("^- `(Test\\w+)`:?\\s*(.*)$")
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if g := re.FindStringSubmatch(line); g != nil {
			if g[2] == "" {
				return nil, fmt.Errorf("%s: %s has no reason; say why it stays out of scope", path, g[1])
			}
			m[g[1]] = g[2]
		}
	}
	return m, nil
}

var testFuncRE = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)

func testNames(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range testFuncRE.FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	return names
}

// copyPackage copies the package's Go files, go.mod and go.sum (the module
// cache keeps them read-only; the copies are writable so go can tidy).
func copyPackage(t *testing.T, from, to string) {
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".go") || n == "go.mod" || n == "go.sum") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// readResults reads go test -json: the outcome and output of every
// top-level test.
func readResults(r io.Reader) (map[string]string, map[string]*strings.Builder, error) {
	results := map[string]string{}
	outputs := map[string]*strings.Builder{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Action string
			Test   string
			Output string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		top, _, _ := strings.Cut(ev.Test, "/")
		switch ev.Action {
		case "output":
			if outputs[top] == nil {
				outputs[top] = &strings.Builder{}
			}
			outputs[top].WriteString(ev.Output)
		case "pass", "fail", "skip":
			if ev.Test == top {
				results[top] = ev.Action
			}
		}
	}
	return results, outputs, sc.Err()
}

// tail is the last n lines of b.
func tail(b *strings.Builder, n int) string {
	if b == nil {
		return "(no output)"
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
