package vmtest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestOptions says which of a package's tests RunTest runs in the VM.
type TestOptions struct {
	// Run is the -test.run pattern for the in-VM tests; "" runs all.
	Run string
	// Bench is the -test.bench pattern, BenchTime its -test.benchtime.
	// Bench "" runs no benchmark unless the host's own test run was
	// given -test.bench, which is then passed on (with -test.benchtime),
	// so `go test -tags system -run TestSystemX -bench . -benchtime 1x`
	// runs the in-VM benchmarks too.
	Bench, BenchTime string
	// Modules are loaded before the tests start (see Config.Modules).
	Modules []string
	// MemoryMiB as in Config. Timeout bounds the VM run without
	// benchmarks (0 means 10 minutes); either way the VM stops 15 s
	// before the test's deadline (go test -timeout), so that its console
	// is reported. Benchmarks can take long under emulation: give go test
	// a -timeout that fits them.
	MemoryMiB int
	Timeout   time.Duration
}

// RunTest compiles the test binary of the package in the current
// directory (the calling test's package, as `go test` runs it) as a
// static linux/amd64 program, boots it in a VM with -test.v, streams
// the VM's console into t.Log, and fails t unless the tests in the VM
// passed. It skips (or under CI=true fails, see systemtest.Need) when
// qemu or the kernel prepared by vmtest/prepare.sh is missing.
//
// The in-VM tests are ordinary test functions of that package that
// skip unless InGuest(); build tags are not needed. The binary is built
// without the "system" tag, so the host-side test calling RunTest is
// not part of it.
func RunTest(t *testing.T, opts TestOptions) *Result {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	systemtest.Need(t, "qemu-system-x86_64 (vmtest/prepare.sh installs it)", err)
	dir, err := CacheDir()
	systemtest.Need(t, "the vmtest cache directory", err)
	k, err := FindKernel(dir)
	systemtest.Need(t, "a kernel prepared by vmtest/prepare.sh", err)

	ctx := t.Context()
	bin := filepath.Join(t.TempDir(), "payload.test")
	t0 := time.Now()
	if err := BuildTest(ctx, ".", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("vmtest: built %s in %v", bin, time.Since(t0).Round(time.Millisecond))

	args := []string{"-test.v", "-test.count=1"}
	if opts.Run != "" {
		args = append(args, "-test.run="+opts.Run)
	}
	bench, benchtime := opts.Bench, opts.BenchTime
	if f := flag.Lookup("test.bench"); bench == "" && f != nil && f.Value.String() != "" {
		bench = f.Value.String()
		if f := flag.Lookup("test.benchtime"); f != nil {
			benchtime = f.Value.String()
		}
	}
	if bench != "" {
		args = append(args, "-test.bench="+bench, "-test.benchmem")
		if benchtime != "" {
			args = append(args, "-test.benchtime="+benchtime)
		}
	}
	// The VM stops in time for its console to be reported before go
	// test's own -timeout panics. Benchmarks are bounded by -timeout only.
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	if bench != "" {
		timeout = 24 * time.Hour
	}
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 15*time.Second; left < timeout {
			timeout = max(left, time.Second)
		}
	}
	res, err := Run(ctx, Config{
		Kernel:    k,
		Payload:   bin,
		Args:      args,
		Modules:   opts.Modules,
		MemoryMiB: opts.MemoryMiB,
		Timeout:   timeout,
		QEMU:      qemu,
		Console:   logWriter{t},
	})
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	t.Logf("vmtest: kernel %s booted in %v, whole run %v", k.Version, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("vmtest: the tests in the VM failed (exit code %d); their output is above", res.ExitCode)
	}
	if bytes.Contains(res.Console, []byte("testing: warning: no tests to run")) {
		t.Fatalf("vmtest: -test.run=%q matched no test in the VM", opts.Run)
	}
	return res
}

// BuildTest compiles the test binary of the package in pkgDir (`go
// test -c`) as a static linux/amd64 program at out, with the go command
// on PATH.
func BuildTest(ctx context.Context, pkgDir, out string) error {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build test binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, gocmd, "test", "-c", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build test binary: go test -c in %s: %w\n%s", pkgDir, err, b)
	}
	return nil
}

// logWriter sends each console line to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log("vm| " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
