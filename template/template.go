package template

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// tmpl is one parsed template: parsed once, executed whenever its data
// changed, one execution at a time.
type tmpl struct {
	name     string // for messages: the source path, or "(dynamic)"
	contents string
	parsed   *template.Template
	env      []string
}

// parseOptions are how a template is parsed; zero values mean
// consul-template's defaults.
type parseOptions struct {
	// LeftDelim and RightDelim replace "{{" and "}}".
	LeftDelim, RightDelim string
	// ErrMissingKey makes indexing a map with a missing key an error
	// instead of the zero value.
	ErrMissingKey bool
	// Env is looked up before the process environment by env, mustEnv
	// and envOrDefault ("NAME=value" entries).
	Env []string
	// Now is the clock of timestamp; nil is time.Now.
	Now func() time.Time
}

// parse parses a template. name is used in messages (the source path). A
// syntax error names the place as name:line:col.
func parse(name, contents string, opts parseOptions) (*tmpl, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	t := template.New(name).Delims(opts.LeftDelim, opts.RightDelim)
	t.Funcs(staticFuncs(now))
	// Placeholders for the per-execution functions, so that the parser
	// knows their names; Execute binds the real ones on a clone.
	var e execution
	t.Funcs(e.apiFuncs(t))
	if opts.ErrMissingKey {
		t.Option("missingkey=error")
	} else {
		t.Option("missingkey=zero")
	}
	if _, err := t.Parse(contents); err != nil {
		return nil, parseError(name, contents, opts, err)
	}
	return &tmpl{name: name, contents: contents, parsed: t, env: opts.Env}, nil
}

// result is what one execution produced.
type result struct {
	// Output is the rendered text; meaningless until Complete.
	Output []byte
	// used are the dependencies the template read, missing those of them
	// that have no data yet.
	used, missing map[dependency]struct{}
}

// Complete reports whether every dependency had data, so that Output can
// be written.
func (r *result) Complete() bool { return len(r.missing) == 0 }

// Missing names the dependencies still waiting for data, sorted, as
// consul-template logs them (e.g. "kv.block(app/port)").
func (r *result) Missing() []string { return names(r.missing) }

func names(set map[dependency]struct{}) []string {
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d.String())
	}
	slices.Sort(out)
	return out
}

// execute runs the template against recall, which returns the data a
// view holds for a dependency and whether it has any. The result is
// returned with an error too: what was read up to the error.
func (t *tmpl) execute(recall func(dependency) (any, bool)) (*result, error) {
	e := &execution{
		recall:  recall,
		env:     t.env,
		used:    make(map[dependency]struct{}),
		missing: make(map[dependency]struct{}),
	}
	clone, err := t.parsed.Clone()
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", t.name, err)
	}
	clone.Funcs(e.apiFuncs(clone))
	var b bytes.Buffer
	res := &result{used: e.used, missing: e.missing}
	if err := clone.Execute(&b, nil); err != nil {
		return res, execError(t.name, err)
	}
	res.Output = b.Bytes()
	return res, nil
}

// text/template reports "template: NAME:LINE: msg" for parse errors and
// "template: NAME:LINE:COL: executing ..." for execution errors.
var (
	parseErrRe = regexp.MustCompile(`^template: (.*?):(\d+): (.*)$`)
	execErrRe  = regexp.MustCompile(`^template: (.*?):(\d+):(\d+): executing "[^"]*" at (.*)$`)
)

// execError rewrites an execution error as "render NAME:LINE:COL: at
// <.X>: what went wrong".
func execError(name string, err error) error {
	msg := err.Error()
	if m := execErrRe.FindStringSubmatch(msg); m != nil && m[1] == name {
		return fmt.Errorf("render %s:%s:%s: at %s", name, m[2], m[3], m[4])
	}
	return fmt.Errorf("render %s: %s", name, strings.TrimPrefix(msg, "template: "))
}

// parseError rewrites a parse error as "parse NAME:LINE:COL: msg".
// text/template gives only the line; the column is that of the action
// where the error starts: the first action of the line such that the
// template cut right after it fails with the same message.
func parseError(name, contents string, opts parseOptions, err error) error {
	m := parseErrRe.FindStringSubmatch(err.Error())
	if m == nil || m[1] != name {
		return fmt.Errorf("parse %s: %s", name, strings.TrimPrefix(err.Error(), "template: "))
	}
	line, _ := strconv.Atoi(m[2])
	msg := m[3]
	if um := unclosedRe.FindStringSubmatch(msg); um != nil && um[1] == name {
		// Reported at the end of the file; the action started earlier.
		line, _ = strconv.Atoi(um[2])
		msg = "unclosed action"
	}
	col := errorColumn(name, contents, line, msg, opts)
	hint := ""
	if strings.HasPrefix(msg, "function ") && strings.HasSuffix(msg, " not defined") {
		hint = "; cairn has consul-template's functions and sprig's as sprig_<name>"
	}
	return fmt.Errorf("parse %s:%d:%d: %s%s", name, line, col, msg, hint)
}

var (
	unclosedRe = regexp.MustCompile(`^unclosed action started at (.*):(\d+)$`)
	quotedRe   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

func errorColumn(name, contents string, line int, msg string, opts parseOptions) int {
	lines := strings.SplitAfter(contents, "\n")
	if line < 1 || line > len(lines) {
		return 1
	}
	lineStart := 0
	for _, l := range lines[:line-1] {
		lineStart += len(l)
	}
	text := strings.TrimSuffix(lines[line-1], "\n")
	left, right := opts.LeftDelim, opts.RightDelim
	if left == "" {
		left = "{{"
	}
	if right == "" {
		right = "}}"
	}
	if msg == "unclosed action" {
		if i := strings.LastIndex(text, left); i >= 0 {
			return runeCol(text, i)
		}
	}
	// The token the message quotes (`function "x" not defined`,
	// `unexpected "}" in operand`), to point at it.
	var tok string
	if q := quotedRe.FindString(msg); q != "" {
		tok, _ = strconv.Unquote(q)
	}
	isFunc := strings.HasPrefix(msg, "function ")
	find := func(s string) int {
		if tok == "" {
			return -1
		}
		if isFunc {
			return indexWord(s, tok)
		}
		return strings.Index(s, tok)
	}
	first := -1
	for off := 0; ; {
		i := strings.Index(text[off:], left)
		if i < 0 {
			break
		}
		start := off + i
		if first < 0 {
			first = start
		}
		end, cut := len(text), len(lines[line-1]) // an unclosed action: up to the end of the line
		if j := strings.Index(text[start+len(left):], right); j >= 0 {
			end = start + len(left) + j + len(right)
			cut = end
		}
		probe := template.New(name).Delims(opts.LeftDelim, opts.RightDelim)
		probe.Funcs(staticFuncs(time.Now))
		var e execution
		probe.Funcs(e.apiFuncs(probe))
		if _, perr := probe.Parse(contents[:lineStart+cut]); perr != nil {
			if pm := parseErrRe.FindStringSubmatch(perr.Error()); pm != nil && pm[2] == strconv.Itoa(line) && pm[3] == msg {
				inner := start + len(left)
				if i := find(text[inner:end]); i >= 0 {
					return runeCol(text, inner+i)
				}
				return runeCol(text, start)
			}
		}
		off = start + len(left)
	}
	if i := find(text); i >= 0 {
		return runeCol(text, i)
	}
	if first >= 0 {
		return runeCol(text, first)
	}
	return 1
}

// indexWord finds w in s where it is not part of a longer identifier.
func indexWord(s, w string) int {
	isIdent := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for off := 0; ; {
		i := strings.Index(s[off:], w)
		if i < 0 || w == "" {
			return -1
		}
		i += off
		end := i + len(w)
		if (i == 0 || !isIdent(s[i-1])) && (end == len(s) || !isIdent(s[end])) {
			return i
		}
		off = i + 1
	}
}

// runeCol is the 1-based column of byte offset i, counted in characters.
func runeCol(s string, i int) int { return len([]rune(s[:i])) + 1 }
