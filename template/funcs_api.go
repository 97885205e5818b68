package template

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"text/template"
)

// execution is one run of a template: what its functions read, which of
// that is not there yet, and the per-run scratch space. Functions record
// every dependency they read; a template with missing dependencies is not
// rendered (consul-template's Brain, used and missing sets).
type execution struct {
	recall  func(dependency) (any, bool)
	env     []string
	used    map[dependency]struct{}
	missing map[dependency]struct{}
	scratch Scratch
}

// use records that d was read and returns its data, if it has any.
func (e *execution) use(d dependency) (any, bool) {
	e.used[d] = struct{}{}
	return e.recall(d)
}

func (e *execution) miss(d dependency) { e.missing[d] = struct{}{} }

// apiFuncs are the functions that read data (and the ones bound to one
// run), built for each execution. Their semantics are consul-template's
// (template/funcs.go): what counts as missing, what an empty argument
// returns, the zero values returned while data is missing.
func (e *execution) apiFuncs(t *template.Template) template.FuncMap {
	return template.FuncMap{
		"datacenters":  e.datacenters,
		"file":         e.file,
		"key":          e.key,
		"keyExists":    e.keyExists,
		"keyOrDefault": e.keyOrDefault,
		"ls":           func(s string) ([]*KeyPair, error) { return e.list(s, false, false) },
		"safeLs":       func(s string) ([]*KeyPair, error) { return e.list(s, false, true) },
		"tree":         func(s string) ([]*KeyPair, error) { return e.list(s, true, false) },
		"safeTree":     func(s string) ([]*KeyPair, error) { return e.list(s, true, true) },
		"node":         e.node,
		"nodes":        e.nodes,
		"service":      e.service,
		"services":     e.services,

		"scratch":         func() *Scratch { return &e.scratch },
		"env":             e.envFunc,
		"mustEnv":         e.mustEnv,
		"envOrDefault":    e.envOrDefault,
		"executeTemplate": executeTemplateFunc(t),
	}
}

func (e *execution) datacenters(ignore ...bool) ([]string, error) {
	result := []string{}
	var d dependency
	switch len(ignore) {
	case 0:
		d = dependency{kind: depDatacenters}
	case 1:
		d = dependency{kind: depDatacenters, ignore: ignore[0]}
	default:
		return result, fmt.Errorf("datacenters: wrong number of arguments, expected 0 or 1, but got %d", len(ignore))
	}
	if v, ok := e.use(d); ok {
		return v.([]string), nil
	}
	e.miss(d)
	return result, nil
}

func (e *execution) file(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	d := dependency{kind: depFile, name: s}
	if v, ok := e.use(d); ok {
		if v == nil {
			return "", nil
		}
		return v.(string), nil
	}
	e.miss(d)
	return "", nil
}

// key waits for the key to exist (consul-template's kv.block): until then
// the template is not rendered.
func (e *execution) key(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	d, err := parseKV(s, depKVBlock)
	if err != nil {
		return "", err
	}
	if v, ok := e.use(d); ok {
		if v == nil {
			return "", nil
		}
		return v.(string), nil
	}
	e.miss(d)
	return "", nil
}

func (e *execution) keyExists(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	d, err := parseKV(s, depKVGet)
	if err != nil {
		return false, err
	}
	if v, ok := e.use(d); ok {
		return v != nil, nil
	}
	e.miss(d)
	return false, nil
}

func (e *execution) keyOrDefault(s, def string) (string, error) {
	if s == "" {
		return def, nil
	}
	d, err := parseKV(s, depKVGet)
	if err != nil {
		return "", err
	}
	if v, ok := e.use(d); ok {
		if v == nil || v.(string) == "" {
			return def, nil
		}
		return v.(string), nil
	}
	e.miss(d)
	return def, nil
}

// list is ls (top-level keys: no "/" in what follows the prefix) and tree
// (every key that is not a "folder"). The safe forms count an empty
// answer as missing, so an accidentally empty prefix never renders.
func (e *execution) list(s string, recursive, safe bool) ([]*KeyPair, error) {
	result := []*KeyPair{}
	if s == "" {
		return result, nil
	}
	d, err := parseKVList(s)
	if err != nil {
		return result, err
	}
	if v, ok := e.use(d); ok {
		for _, p := range v.([]*KeyPair) {
			if recursive {
				if parts := strings.Split(p.Key, "/"); parts[len(parts)-1] != "" {
					result = append(result, p)
				}
			} else if p.Key != "" && !strings.Contains(p.Key, "/") {
				result = append(result, p)
			}
		}
		if len(result) > 0 || !safe {
			return result, nil
		}
	}
	e.miss(d)
	return result, nil
}

func (e *execution) node(s ...string) (any, error) {
	d, err := parseCatalogNode(strings.Join(s, ""))
	if err != nil {
		return nil, err
	}
	if v, ok := e.use(d); ok {
		return v.(*CatalogNode), nil
	}
	e.miss(d)
	return nil, nil
}

func (e *execution) nodes(s ...string) ([]*Node, error) {
	result := []*Node{}
	d, err := parseCatalogNodes(strings.Join(s, ""))
	if err != nil {
		return nil, err
	}
	if v, ok := e.use(d); ok {
		return v.([]*Node), nil
	}
	e.miss(d)
	return result, nil
}

// service takes "[tag.]name[@dc][~near][|filters]", or the name and the
// filters as two arguments ("web", "passing,warning"), which
// consul-template joins with "|".
func (e *execution) service(s ...string) ([]*HealthService, error) {
	result := []*HealthService{}
	if len(s) == 0 || s[0] == "" {
		return result, nil
	}
	d, err := parseHealthService(strings.Join(s, "|"))
	if err != nil {
		return nil, err
	}
	if v, ok := e.use(d); ok {
		return v.([]*HealthService), nil
	}
	e.miss(d)
	return result, nil
}

func (e *execution) services(s ...string) ([]*CatalogSnippet, error) {
	result := []*CatalogSnippet{}
	d, err := parseCatalogServices(strings.Join(s, ""))
	if err != nil {
		return nil, err
	}
	if v, ok := e.use(d); ok {
		return v.([]*CatalogSnippet), nil
	}
	e.miss(d)
	return result, nil
}

// lookupEnv looks name up in the runner's environment first, then the
// process's (consul-template's envFunc).
func (e *execution) lookupEnv(name string) (string, bool) {
	for _, kv := range e.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return os.LookupEnv(name)
}

func (e *execution) envFunc(s string) (string, error) {
	v, _ := e.lookupEnv(s)
	return v, nil
}

func (e *execution) mustEnv(s string) (string, error) {
	v, _ := e.lookupEnv(s)
	if v == "" {
		v = os.Getenv(s)
	}
	if v == "" {
		return "", fmt.Errorf("required environment variable %s is empty", s)
	}
	return v, nil
}

func (e *execution) envOrDefault(s, def string) (string, error) {
	if v, ok := e.lookupEnv(s); ok {
		return v, nil
	}
	return def, nil
}

// executeTemplateFunc runs a {{ define }}d template of t and returns what
// it printed.
func executeTemplateFunc(t *template.Template) func(string, ...any) (string, error) {
	return func(name string, data ...any) (string, error) {
		var dot any
		switch len(data) {
		case 0:
		case 1:
			dot = data[0]
		default:
			return "", fmt.Errorf("executeTemplate: wrong number of arguments, expected 1 or 2, but got %d", len(data)+1)
		}
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, dot); err != nil {
			return "", err
		}
		return b.String(), nil
	}
}
