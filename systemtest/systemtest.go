// Package systemtest is for tests that need something from the machine
// they run on: root, a network namespace, nftables, Docker, qemu, nginx.
// Outside CI such a test skips and names what is missing; under CI=true
// (where .ci/run installed everything) a missing prerequisite fails the
// test instead, so a broken CI machine cannot pass by skipping. It
// imports nothing of cairn's.
package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where every
// prerequisite must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// Need stops the test when err says a prerequisite (what) is missing:
// a skip outside CI, a failure under CI=true. err nil means it is there.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("this test needs %s, which CI must provide (.ci/run installs it): %v", what, err)
	}
	t.Skipf("skipped: needs %s: %v", what, err)
}

// NeedRoot needs the process to run as root (network namespaces, the
// kernel's netfilter and IPVS tables).
func NeedRoot(t testing.TB) {
	t.Helper()
	var err error
	if uid := os.Geteuid(); uid != 0 {
		err = fmt.Errorf("running as uid %d", uid)
	}
	Need(t, "root", err)
}

// NeedCommand needs an executable on the PATH and returns its path.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	Need(t, "the "+name+" command", err)
	return path
}
