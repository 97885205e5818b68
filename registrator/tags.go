package registrator

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
)

// tagTemplate is a parsed -tags value: a plain comma list, or a Go template
// over the container's inspect data (Container) that renders to one.
type tagTemplate struct {
	src  string
	tmpl *template.Template // nil for a plain list
}

// tagFuncs are the helpers registrator's tag templates offer.
var tagFuncs = template.FuncMap{
	"toUpper": strings.ToUpper,
	"toLower": strings.ToLower,
	"split":   func(sep, v string) []string { return strings.Split(v, sep) },
	"join":    func(sep string, s []string) string { return strings.Join(s, sep) },
	"replace": func(n int, old, new, v string) string { return strings.Replace(v, old, new, n) },
	"mIndex":  func(k string, m map[string]string) string { return m[k] },
	"sIndex": func(i int, s []string) string {
		if len(s) == 0 {
			return ""
		}
		if i < 0 {
			i = len(s) + i
		}
		return s[max(0, min(i, len(s)-1))]
	},
	"splitIndex": func(i int, sep, v string) string {
		l := strings.Split(v, sep)
		if i < 0 {
			i = len(l) + i
		}
		return l[max(0, min(i, len(l)-1))]
	},
}

// parseTags parses -tags once, at New.
func parseTags(src string) (*tagTemplate, error) {
	t := &tagTemplate{src: src}
	if !strings.Contains(src, "{{") {
		return t, nil
	}
	tm, err := template.New("tags").Funcs(tagFuncs).Option("missingkey=zero").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("-tags=%q is not a valid Go template: %w", src, err)
	}
	t.tmpl = tm
	return t, nil
}

// render returns the comma list for container c.
func (t *tagTemplate) render(c *Container) (string, error) {
	if t == nil || t.tmpl == nil {
		if t == nil {
			return "", nil
		}
		return t.src, nil
	}
	var b bytes.Buffer
	if err := t.tmpl.Execute(&b, c); err != nil {
		return "", fmt.Errorf("-tags template %q over container %s: %w", t.src, c.Name, err)
	}
	return b.String(), nil
}

// splitTags splits a comma list the way registrator does: "\," is a comma
// inside a tag, empty items are dropped, and surrounding space is trimmed.
func splitTags(s string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if v := strings.TrimSpace(cur.String()); v != "" {
			out = append(out, v)
		}
		cur.Reset()
	}
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			flush()
		default:
			cur.WriteByte(s[i])
		}
	}
	flush()
	return out
}

// TagTemplateError is what is wrong with a -tags value (nil when it is a
// plain comma list or a template that parses), for callers that name the
// option themselves (cairn agent -docker-tags).
func TagTemplateError(src string) error {
	if !strings.Contains(src, "{{") {
		return nil
	}
	_, err := template.New("tags").Funcs(tagFuncs).Parse(src)
	return err
}
