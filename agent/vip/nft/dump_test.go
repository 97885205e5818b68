package nft

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the kernel's table")

// dump lists the data plane's table as the kernel holds it, read back
// through netlink: each chain (with its hook), the comment of each rule,
// and both maps' elements, sorted. Rule comments are what this package
// wrote; their presence and order in the kernel is what is checked.
func dump(t testing.TB, d *Dataplane) string {
	t.Helper()
	k, err := d.read()
	if err != nil {
		t.Fatalf("read table: %v", err)
	}
	if !k.exists {
		return "no table\n"
	}
	fps, err := d.ruleComments()
	if err != nil {
		t.Fatalf("read rules: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\n", d.cfg.Table)
	names := make([]string, 0, len(k.chains))
	for name := range k.chains {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c := k.chains[name]
		fmt.Fprintf(&b, "chain %s", name)
		if c.Hooknum != nil {
			fmt.Fprintf(&b, " { type %s hook %s priority %d }", c.Type, hookName(*c.Hooknum), *c.Priority)
		}
		b.WriteString("\n")
		if fp := fps[name]; fp != "" {
			for _, line := range strings.Split(fp, "\n") {
				fmt.Fprintf(&b, "\t%s\n", line)
			}
		}
	}
	for _, set := range setNames() {
		if !k.sets[set] {
			fmt.Fprintf(&b, "no set %s\n", set)
			continue
		}
		fmt.Fprintf(&b, "set %s\n", set)
		var lines []string
		kind := set
		if strings.HasPrefix(set, mapBackends+"-") {
			kind = mapBackends
		}
		for _, s := range k.vips {
			switch kind {
			case mapServices:
				for key, n := range s.counts {
					lines = append(lines, fmt.Sprintf("\t%s : goto %s\n", key, balanceChainName(classOf(n, shardOf(key.vip())))))
				}
			case mapBackends:
				for key, be := range s.backends {
					if backendsMap(shardOf(mapKey(key[:12]).vip())) != set {
						continue
					}
					lines = append(lines, fmt.Sprintf("\t%s : %s . %d\n", key, be.Addr(), be.Port()))
				}
			case mapNoEndpoints:
				for key := range s.noEndpoints {
					lines = append(lines, fmt.Sprintf("\t%s\n", key))
				}
			}
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, ""))
	}
	return b.String()
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("table differs from %s (-want +got):\n%s", path, diff)
	}
}
