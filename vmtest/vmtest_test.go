package vmtest

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseModulesDepAndLoadOrder(t *testing.T) {
	dep := `kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/net/dummy.ko:
`
	k := &Kernel{Dir: t.TempDir(), Version: "6.1.0-test", deps: parseModulesDep([]byte(dep))}
	got, err := k.loadOrder([]string{"ip_vs_rr", "dummy", "ip-vs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/lib/libcrc32c.ko",
		"kernel/net/netfilter/nf_conntrack.ko",
		"kernel/net/netfilter/ipvs/ip_vs.ko",
		"kernel/net/netfilter/ipvs/ip_vs_rr.ko",
		"kernel/drivers/net/dummy.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("loadOrder = %q, want %q", got, want)
	}
	if _, err := k.loadOrder([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), `has no module "nosuch"`) {
		t.Errorf("loadOrder(nosuch) error = %v, want one naming the module", err)
	}
}

func TestFindKernelMissing(t *testing.T) {
	_, err := FindKernel(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "run vmtest/prepare.sh") {
		t.Errorf("FindKernel(empty dir) error = %v, want one that says to run vmtest/prepare.sh", err)
	}
}

func TestInitScriptQuotes(t *testing.T) {
	s := initScript(Config{Kernel: &Kernel{Version: "v"}, Args: []string{"-test.run=A|B", "it's"}}, []string{"x.ko"}, "vmtest-1")
	for _, want := range []string{
		"/payload '-test.run=A|B' 'it'\\''s'\n",
		"insmod /lib/modules/v/x.ko",
		"echo 'vmtest-1 start'",
		`echo "vmtest-1 exit $?"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
}

// TestGuest runs only inside the VM that TestSystemVMTest boots: it
// checks what the init promised.
func TestGuest(t *testing.T) {
	if !InGuest() {
		t.Skip("runs inside the VM only (TestSystemVMTest boots it)")
	}
	for _, p := range []string{"/sys/module/dummy", "/proc/self", "/dev/null", "/run/netns"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("in the VM: %v", err)
		}
	}
}
