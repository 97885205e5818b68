package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"unicode"
)

// filter is a parsed ?filter= expression in Consul's language (go-bexpr):
//
//	Service.Tags contains "primary" and not (Node.Meta.env == "dev")
//	"web" in ServiceTags or ServiceMeta["version"] matches "^2\\."
//	Checks.Status != passing
//	Service.Meta is not empty
//
// It is evaluated against each item's JSON form, so the selectors are the
// JSON field names of the endpoint's answer, as in Consul. A selector
// through a list (Checks.Status) matches when any element does. Consul
// checks selectors against the answer's type and rejects unknown ones;
// here an unknown selector is simply absent (empty).
type filter struct{ root node }

type node interface{ eval(v any) bool }

type (
	andNode struct{ l, r node }
	orNode  struct{ l, r node }
	notNode struct{ n node }
	match   struct {
		sel    []string
		op     string // ==, !=, contains, in, empty, matches
		value  string
		re     *regexp.Regexp
		negate bool
	}
)

func (n andNode) eval(v any) bool { return n.l.eval(v) && n.r.eval(v) }
func (n orNode) eval(v any) bool  { return n.l.eval(v) || n.r.eval(v) }
func (n notNode) eval(v any) bool { return !n.n.eval(v) }

func (m match) eval(v any) bool {
	vals := resolve(v, m.sel)
	var ok bool
	switch m.op {
	case "empty":
		ok = true
		for _, x := range vals {
			if !isEmpty(x) {
				ok = false
			}
		}
	default:
		for _, x := range vals {
			if m.test(x) {
				ok = true
				break
			}
		}
	}
	return ok != m.negate
}

func (m match) test(x any) bool {
	switch m.op {
	case "==":
		return equal(x, m.value)
	case "matches":
		s, isStr := x.(string)
		return isStr && m.re.MatchString(s)
	case "contains", "in":
		switch t := x.(type) {
		case []any:
			for _, e := range t {
				if equal(e, m.value) {
					return true
				}
			}
		case map[string]any:
			_, has := t[m.value]
			return has
		case string:
			return strings.Contains(t, m.value)
		}
	}
	return false
}

// resolve follows a selector; a list on the way fans out to its elements.
func resolve(v any, sel []string) []any {
	if len(sel) == 0 {
		return []any{v}
	}
	switch t := v.(type) {
	case map[string]any:
		child, ok := t[sel[0]]
		if !ok {
			return []any{nil}
		}
		return resolve(child, sel[1:])
	case []any:
		var out []any
		for _, e := range t {
			out = append(out, resolve(e, sel)...)
		}
		if len(out) == 0 {
			return []any{nil}
		}
		return out
	}
	return []any{nil}
}

func isEmpty(x any) bool {
	switch t := x.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// equal compares a JSON value with the expression's literal in the
// value's own type, as bexpr coerces the literal to the field's type.
func equal(x any, lit string) bool {
	switch t := x.(type) {
	case string:
		return t == lit
	case json.Number:
		return t.String() == lit
	case bool:
		return fmt.Sprint(t) == lit
	case nil:
		return false
	}
	return false
}

// parseFilter parses expr; errors say where and what was expected, in
// the words Consul uses for a bad filter.
func parseFilter(expr string) (*filter, error) {
	toks, err := lexFilter(expr)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at the end of the expression", p.toks[p.pos].text)
	}
	return &filter{root: n}, nil
}

type token struct {
	text   string
	quoted bool
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')' || c == '[' || c == ']' || c == '.':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '=' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				toks = append(toks, token{text: s[i : i+2]})
				i += 2
				continue
			}
			return nil, fmt.Errorf("unexpected %q at offset %d; use == or !=", c, i)
		case c == '"' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string starting at offset %d", i)
			}
			toks = append(toks, token{text: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || strings.IndexByte("_-/:+", s[j]) >= 0) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []token
	pos  int
}

func (p *filterParser) peek(k int) (token, bool) {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k], true
	}
	return token{}, false
}

// keyword reports whether the next token is the bare word w.
func (p *filterParser) keyword(w string) bool {
	t, ok := p.peek(0)
	return ok && !t.quoted && t.text == w
}

func (p *filterParser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.keyword("or") {
		p.pos++
		var r node
		if r, err = p.and(); err == nil {
			l = orNode{l, r}
		}
	}
	return l, err
}

func (p *filterParser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.keyword("and") {
		p.pos++
		var r node
		if r, err = p.not(); err == nil {
			l = andNode{l, r}
		}
	}
	return l, err
}

func (p *filterParser) not() (node, error) {
	if p.keyword("not") {
		p.pos++
		n, err := p.not()
		return notNode{n}, err
	}
	if t, ok := p.peek(0); ok && !t.quoted && t.text == "(" {
		p.pos++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if t, ok := p.peek(0); !ok || t.text != ")" {
			return nil, fmt.Errorf("missing ) to close a (")
		}
		p.pos++
		return n, nil
	}
	return p.match()
}

func (p *filterParser) match() (node, error) {
	// value in/not in selector
	if t, ok := p.peek(0); ok {
		if n1, ok := p.peek(1); ok && !n1.quoted && (n1.text == "in" || n1.text == "not") {
			if n1.text == "in" || (p.pos+2 < len(p.toks) && p.toks[p.pos+2].text == "in") {
				p.pos++
				negate := p.keyword("not")
				if negate {
					p.pos++
				}
				p.pos++ // in
				sel, err := p.selector()
				if err != nil {
					return nil, err
				}
				return match{sel: sel, op: "in", value: t.text, negate: negate}, nil
			}
		}
	}
	sel, err := p.selector()
	if err != nil {
		return nil, err
	}
	op, ok := p.peek(0)
	if !ok {
		return nil, fmt.Errorf("selector %s needs an operator (==, !=, contains, in, is empty, matches)", strings.Join(sel, "."))
	}
	p.pos++
	m := match{sel: sel}
	switch {
	case op.text == "==" || op.text == "!=":
		m.op, m.negate = "==", op.text == "!="
	case op.text == "contains":
		m.op = "contains"
	case op.text == "matches":
		m.op = "matches"
	case op.text == "not" && p.keyword("contains"):
		p.pos++
		m.op, m.negate = "contains", true
	case op.text == "not" && p.keyword("matches"):
		p.pos++
		m.op, m.negate = "matches", true
	case op.text == "is":
		if p.keyword("not") {
			p.pos++
			m.negate = true
		}
		if !p.keyword("empty") {
			return nil, fmt.Errorf("expected \"empty\" after \"is\"")
		}
		p.pos++
		m.op = "empty"
		return m, nil
	default:
		return nil, fmt.Errorf("unknown operator %q after %s; use ==, !=, contains, in, is empty or matches", op.text, strings.Join(sel, "."))
	}
	v, ok := p.peek(0)
	if !ok || (!v.quoted && strings.ContainsAny(v.text, "()[].")) {
		return nil, fmt.Errorf("missing value after %s %s", strings.Join(sel, "."), op.text)
	}
	p.pos++
	m.value = v.text
	if m.op == "matches" {
		re, err := regexp.Compile(v.text)
		if err != nil {
			return nil, fmt.Errorf("bad regular expression %q: %v", v.text, err)
		}
		m.re = re
	}
	return m, nil
}

// selector parses a.b.c and a["b"].c.
func (p *filterParser) selector() ([]string, error) {
	t, ok := p.peek(0)
	if !ok || t.quoted {
		return nil, fmt.Errorf("expected a selector such as Service.Tags")
	}
	sel := []string{t.text}
	p.pos++
	for {
		n, ok := p.peek(0)
		switch {
		case ok && n.text == "." && !n.quoted:
			p.pos++
			f, ok := p.peek(0)
			if !ok {
				return nil, fmt.Errorf("selector ends with a dot")
			}
			sel = append(sel, f.text)
			p.pos++
		case ok && n.text == "[" && !n.quoted:
			k, ok1 := p.peek(1)
			c, ok2 := p.peek(2)
			if !ok1 || !ok2 || c.text != "]" {
				return nil, fmt.Errorf("expected [\"key\"] in selector %s", strings.Join(sel, "."))
			}
			sel = append(sel, k.text)
			p.pos += 3
		default:
			return sel, nil
		}
	}
}

// apply keeps the elements of a slice, or the values of a map, for which
// the filter holds, keeping their own types (so the answer's JSON is
// unchanged but for what was filtered out).
func (f *filter) apply(out any) (any, error) {
	if f == nil || out == nil {
		return out, nil
	}
	v := reflect.ValueOf(out)
	switch v.Kind() {
	case reflect.Slice:
		kept := reflect.MakeSlice(v.Type(), 0, v.Len())
		for i := range v.Len() {
			ok, err := f.holds(v.Index(i).Interface())
			if err != nil {
				return nil, err
			}
			if ok {
				kept = reflect.Append(kept, v.Index(i))
			}
		}
		return kept.Interface(), nil
	case reflect.Map:
		kept := reflect.MakeMap(v.Type())
		for it := v.MapRange(); it.Next(); {
			ok, err := f.holds(it.Value().Interface())
			if err != nil {
				return nil, err
			}
			if ok {
				kept.SetMapIndex(it.Key(), it.Value())
			}
		}
		return kept.Interface(), nil
	}
	// Only lists and maps of items can be filtered; anything else reaching
	// here would be answered unfiltered, which must not happen silently.
	return nil, fmt.Errorf("cannot filter a %T answer", out)
}

func (f *filter) holds(item any) (bool, error) {
	b, err := json.Marshal(item)
	if err != nil {
		return false, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return false, err
	}
	return f.root.eval(doc), nil
}
