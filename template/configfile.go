package template

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
)

// FileConfig is what a consul-template configuration file (HCL or JSON)
// says, in the part cairn reads:
//
//	consul { address = "127.0.0.1:8500"  token = "..." }
//	log_level = "info"
//	wait { min = "1s"  max = "5s" }          # or wait = "1s:5s"
//	template {
//	  source          = "web.ctmpl"          # or contents = "..."
//	  destination     = "/etc/nginx/conf.d/web.conf"
//	  command         = "nginx -s reload"
//	  command_timeout = "30s"
//	  check           = "nginx -t"           # cairn: validate before keeping
//	  check_timeout   = "10s"
//	  perms           = 0644
//	  backup          = true
//	  wait            = "2s:10s"             # or wait { min max }
//	  left_delimiter  = "{{"
//	  right_delimiter = "}}"
//	  error_on_missing_key = false
//	}
type FileConfig struct {
	ConsulAddr string
	Token      string
	LogLevel   string
	Wait       *Wait
	Templates  []TemplateConfig
}

// LoadConfigFile reads a configuration file. Errors name the file, the
// line and column (HCL; JSON files have no positions) and the key.
func LoadConfigFile(path string) (FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("read config file: %w", err)
	}
	root, err := hcl.ParseBytes(b)
	if err != nil {
		var pe *parser.PosError
		if errors.As(err, &pe) && pe.Pos.Line > 0 {
			return FileConfig{}, fmt.Errorf("parse config file %s:%d:%d: %v", path, pe.Pos.Line, pe.Pos.Column, pe.Err)
		}
		return FileConfig{}, fmt.Errorf("parse config file %s: %w", path, err)
	}
	list, ok := root.Node.(*ast.ObjectList)
	if !ok {
		return FileConfig{}, fmt.Errorf("config file %s: not a list of settings", path)
	}
	p := cfgParser{path: path}
	var fc FileConfig
	for _, item := range list.Items {
		key := p.key(item)
		switch key {
		case "consul":
			err = p.block(item, map[string]func(*ast.ObjectItem) error{
				"address": func(i *ast.ObjectItem) (err error) { fc.ConsulAddr, err = p.str(i); return },
				"token":   func(i *ast.ObjectItem) (err error) { fc.Token, err = p.str(i); return },
			})
		case "log_level":
			fc.LogLevel, err = p.str(item)
		case "wait":
			var w Wait
			w, err = p.wait(item)
			fc.Wait = &w
		case "template":
			err = p.each(item, func(obj *ast.ObjectItem) error {
				t, err := p.template(obj)
				fc.Templates = append(fc.Templates, t)
				return err
			})
		default:
			err = p.unknown(item, key, "consul, log_level, template, wait")
		}
		if err != nil {
			return FileConfig{}, err
		}
	}
	return fc, nil
}

type cfgParser struct{ path string }

// at is "path:line:col" of n, or the path alone for JSON.
func (p cfgParser) at(n ast.Node) string {
	if pos := n.Pos(); pos.Line > 0 {
		return fmt.Sprintf("%s:%d:%d", p.path, pos.Line, pos.Column)
	}
	return p.path
}

func (p cfgParser) key(item *ast.ObjectItem) string {
	if len(item.Keys) == 0 {
		return ""
	}
	k, _ := item.Keys[0].Token.Value().(string)
	return k
}

func (p cfgParser) errorf(n ast.Node, format string, a ...any) error {
	return fmt.Errorf("%s: %s", p.at(n), fmt.Sprintf(format, a...))
}

func (p cfgParser) unknown(item *ast.ObjectItem, key, known string) error {
	return p.errorf(item, "unknown key %q; cairn template reads %s", key, known)
}

// each calls fn for every object of a block key: `template { }` repeated,
// or JSON's "template": [ {...}, {...} ].
func (p cfgParser) each(item *ast.ObjectItem, fn func(*ast.ObjectItem) error) error {
	switch v := item.Val.(type) {
	case *ast.ObjectType:
		return fn(item)
	case *ast.ListType:
		for _, n := range v.List {
			obj, ok := n.(*ast.ObjectType)
			if !ok {
				return p.errorf(n, "%s: expected a block { ... }", p.key(item))
			}
			if err := fn(&ast.ObjectItem{Keys: item.Keys, Val: obj}); err != nil {
				return err
			}
		}
		return nil
	}
	return p.errorf(item, "%s: expected a block { ... }", p.key(item))
}

// block applies the setters of the keys of a block; other keys are an
// error that lists the known ones.
func (p cfgParser) block(item *ast.ObjectItem, setters map[string]func(*ast.ObjectItem) error) error {
	obj, ok := item.Val.(*ast.ObjectType)
	if !ok {
		return p.errorf(item, "%s: expected a block { ... }", p.key(item))
	}
	known := make([]string, 0, len(setters))
	for k := range setters {
		known = append(known, k)
	}
	slices.Sort(known)
	for _, sub := range obj.List.Items {
		k := p.key(sub)
		set, ok := setters[k]
		if !ok {
			return p.errorf(sub, "unknown key %q in %s; cairn template reads %s", k, p.key(item), strings.Join(known, ", "))
		}
		if err := set(sub); err != nil {
			return err
		}
	}
	return nil
}

func (p cfgParser) literal(item *ast.ObjectItem) (token.Token, error) {
	lit, ok := item.Val.(*ast.LiteralType)
	if !ok {
		return token.Token{}, p.errorf(item, "%s: expected a value, not a block or list", p.key(item))
	}
	return lit.Token, nil
}

func (p cfgParser) str(item *ast.ObjectItem) (string, error) {
	tok, err := p.literal(item)
	if err != nil {
		return "", err
	}
	if tok.Type != token.STRING && tok.Type != token.HEREDOC {
		return "", p.errorf(item, "%s = %s: expected a string in quotes", p.key(item), tok.Text)
	}
	s, _ := tok.Value().(string)
	return s, nil
}

func (p cfgParser) boolean(item *ast.ObjectItem) (bool, error) {
	tok, err := p.literal(item)
	if err != nil {
		return false, err
	}
	if tok.Type == token.BOOL {
		return tok.Text == "true", nil
	}
	if tok.Type == token.STRING {
		if b, err := strconv.ParseBool(tok.Value().(string)); err == nil {
			return b, nil
		}
	}
	return false, p.errorf(item, "%s = %s: expected true or false", p.key(item), tok.Text)
}

func (p cfgParser) duration(item *ast.ObjectItem) (time.Duration, error) {
	s, err := p.str(item)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, p.errorf(item, "%s = %q: expected a duration such as \"30s\"", p.key(item), s)
	}
	return d, nil
}

// perms reads 0644 (an octal number in HCL), "0644", or a JSON number.
func (p cfgParser) perms(item *ast.ObjectItem) (os.FileMode, error) {
	tok, err := p.literal(item)
	if err != nil {
		return 0, err
	}
	var v uint64
	switch tok.Type {
	case token.NUMBER:
		if tok.JSON {
			v, err = strconv.ParseUint(tok.Text, 10, 32)
		} else {
			v, err = strconv.ParseUint(tok.Text, 0, 32)
		}
	case token.STRING:
		v, err = strconv.ParseUint(tok.Value().(string), 8, 32)
	default:
		err = fmt.Errorf("not a number")
	}
	if err != nil || v&^0o777 != 0 {
		return 0, p.errorf(item, "perms = %s: expected permission bits such as 0644", tok.Text)
	}
	return os.FileMode(v), nil
}

// wait reads `wait = "1s:5s"` or `wait { min = "1s" max = "5s" }`.
func (p cfgParser) wait(item *ast.ObjectItem) (Wait, error) {
	if _, ok := item.Val.(*ast.LiteralType); ok {
		s, err := p.str(item)
		if err != nil {
			return Wait{}, err
		}
		w, err := ParseWait(s)
		if err != nil {
			return Wait{}, p.errorf(item, "%v", err)
		}
		return w, nil
	}
	var w Wait
	var hasMax bool
	err := p.block(item, map[string]func(*ast.ObjectItem) error{
		"min": func(i *ast.ObjectItem) (err error) { w.Min, err = p.duration(i); return },
		"max": func(i *ast.ObjectItem) (err error) { w.Max, err = p.duration(i); hasMax = true; return },
	})
	if err != nil {
		return Wait{}, err
	}
	if !hasMax {
		w.Max = 4 * w.Min
	}
	if w.Max < w.Min {
		return Wait{}, p.errorf(item, "wait: max %s is less than min %s; give max >= min", w.Max, w.Min)
	}
	return w, nil
}

func (p cfgParser) template(item *ast.ObjectItem) (TemplateConfig, error) {
	var t TemplateConfig
	str := func(dst *string) func(*ast.ObjectItem) error {
		return func(i *ast.ObjectItem) (err error) { *dst, err = p.str(i); return }
	}
	dur := func(dst *time.Duration) func(*ast.ObjectItem) error {
		return func(i *ast.ObjectItem) (err error) { *dst, err = p.duration(i); return }
	}
	boolean := func(dst *bool) func(*ast.ObjectItem) error {
		return func(i *ast.ObjectItem) (err error) { *dst, err = p.boolean(i); return }
	}
	err := p.block(item, map[string]func(*ast.ObjectItem) error{
		"source":               str(&t.Source),
		"contents":             str(&t.Contents),
		"destination":          str(&t.Destination),
		"command":              str(&t.Command),
		"command_timeout":      dur(&t.CommandTimeout),
		"check":                str(&t.Check),
		"check_timeout":        dur(&t.CheckTimeout),
		"backup":               boolean(&t.Backup),
		"left_delimiter":       str(&t.LeftDelim),
		"right_delimiter":      str(&t.RightDelim),
		"error_on_missing_key": boolean(&t.ErrMissingKey),
		"perms":                func(i *ast.ObjectItem) (err error) { t.Perms, err = p.perms(i); return },
		"wait": func(i *ast.ObjectItem) error {
			w, err := p.wait(i)
			t.Wait = &w
			return err
		},
	})
	if err != nil {
		return TemplateConfig{}, err
	}
	if t.Source == "" && t.Contents == "" {
		return TemplateConfig{}, p.errorf(item, "template needs source = \"<file>\" (or contents)")
	}
	return t, nil
}
