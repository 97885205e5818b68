//go:build system

package vmtest

import (
	"testing"
	"time"
)

// TestSystemVMTest boots this package's own test binary in the VM, so a
// broken kernel, initramfs or console parsing shows here first.
func TestSystemVMTest(t *testing.T) {
	res := RunTest(t, TestOptions{Run: "^TestGuest$", Modules: []string{"dummy"}, Timeout: 5 * time.Minute})
	t.Logf("boot %v, total %v", res.Boot, res.Total)
}
