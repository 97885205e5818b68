// Package cairn_test pins the repository's layout rules (house-style.md):
// which packages may import which, and that every package says what it
// is. It reads the build graph with `go list`, as Tailscale's deptest does.
package cairn_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cairn-dev/cairn"

// forbidden maps a package (with everything under it) to the packages
// (with everything under them) it must never import, directly or not.
// Dependencies point one way: cmd -> agent -> {kv, dns, template,
// registrator, agent/*}; the leaves take small interfaces instead of
// importing each other.
var forbidden = map[string][]string{
	"kv":          {"agent", "dns", "template", "registrator", "cmd"},
	"kvtest":      {"agent", "dns", "template", "registrator", "cmd"},
	"systemtest":  {"agent", "kv", "dns", "template", "registrator", "cmd"},
	"vmtest":      {"agent", "kv", "dns", "template", "registrator", "cmd"},
	"dns":         {"agent", "kv", "template", "registrator", "cmd"},
	"template":    {"agent", "kv", "dns", "registrator", "cmd"},
	"registrator": {"agent", "kv", "dns", "template", "cmd"},
	// blocking is a leaf that kv and agent/catalog both use: it imports
	// nothing of cairn's.
	"blocking": {"agent", "kv", "kvtest", "dns", "template", "registrator", "systemtest", "cmd", "e2e", "bench"},
	// agent/* are parts the agent wires; they must not reach back into
	// it or into the other leaves.
	"agent/httpapi":       {"dns", "template", "registrator", "cmd"},
	"agent/membership":    {"kv", "dns", "template", "registrator", "cmd"},
	"agent/catalog":       {"kv", "dns", "template", "registrator", "cmd"},
	"agent/checks":        {"kv", "dns", "template", "registrator", "cmd"},
	"agent/consuljson":    {"kv", "dns", "template", "registrator", "cmd", "agent/httpapi"},
	"agent/vip":           {"dns", "template", "registrator", "cmd"},
	"agent/preparedquery": {"dns", "template", "registrator", "cmd", "agent/httpapi"},
	"agent/acl":           {"dns", "template", "registrator", "cmd", "agent/httpapi"},
	"agent":               {"cmd"},
}

// agentPkg is the agent package itself, which no agent/* part may import
// (Go rejects the cycle only once agent imports that part).
const agentPkg = module + "/agent"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	GoFiles    []string
	Deps       []string
	Imports    []string
}

// goList returns every package of the module with its transitive
// dependencies (go list -deps, per package).
func goList(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Name,Doc,GoFiles,Deps,Imports", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list ./... listed no packages")
	}
	return pkgs
}

// rel is the import path relative to the module ("" for the root).
func rel(importPath string) (string, bool) {
	if importPath == module {
		return "", true
	}
	r, ok := strings.CutPrefix(importPath, module+"/")
	return r, ok
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func TestForbiddenImports(t *testing.T) {
	for _, p := range goList(t) {
		self, _ := rel(p.ImportPath)
		var rules []string
		for dir, deny := range forbidden {
			// The most specific rule wins: agent/httpapi is not judged
			// by agent's looser one.
			if under(self, dir) && (len(rules) == 0 || len(dir) > len(rules[0])) {
				rules = append([]string{dir}, deny...)
			}
		}
		for _, dep := range p.Deps {
			d, ok := rel(dep)
			if !ok {
				continue
			}
			if len(rules) > 0 {
				for _, deny := range rules[1:] {
					if under(d, deny) {
						t.Errorf("%s imports %s (through go list -deps); %s must not import %s: see house-style.md", self, d, rules[0], deny)
					}
				}
			}
			if under(self, "agent") && self != "agent" && dep == agentPkg {
				t.Errorf("%s imports agent; agent/* parts are wired by agent and must not import it", self)
			}
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range goList(t) {
		if len(p.GoFiles) == 0 {
			continue // test-only directories such as this one
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s (%s) has no doc comment; add a doc.go that says what it owns and what it must not import", p.Name, p.ImportPath)
		}
	}
}
