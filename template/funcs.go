package template

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"

	"dario.cat/mergo"
	"github.com/Masterminds/sprig/v3"
	socktmpl "github.com/hashicorp/go-sockaddr/template"
)

// staticFuncs are the helper functions that read no data, consul-template's
// (template/funcs.go) with its names, argument order (pipe-friendly: the
// piped value comes last) and results, plus every sprig function under a
// "sprig_" prefix, as consul-template exposes sprig. They are bound once,
// when a template is parsed; apiFuncs are bound per execution.
func staticFuncs(now func() time.Time) template.FuncMap {
	m := template.FuncMap{
		"base64Decode":          base64Decode,
		"base64Encode":          base64Encode,
		"base64URLDecode":       base64URLDecode,
		"base64URLEncode":       base64URLEncode,
		"byKey":                 byKey,
		"byTag":                 byTag,
		"byPort":                byPort,
		"byMeta":                byMeta,
		"contains":              contains,
		"containsAll":           containsSome(true, true),
		"containsAny":           containsSome(false, false),
		"containsNone":          containsSome(true, false),
		"containsNotAll":        containsSome(false, true),
		"explode":               explode,
		"explodeMap":            explodeMap,
		"mergeMap":              mergeMap,
		"mergeMapWithOverride":  mergeMapWithOverride,
		"in":                    in,
		"indent":                indent,
		"loop":                  loop,
		"join":                  join,
		"trim":                  trim,
		"trimPrefix":            trimPrefix,
		"trimSuffix":            trimSuffix,
		"trimSpace":             trimSpace,
		"parseBool":             parseBool,
		"parseFloat":            parseFloat,
		"parseInt":              parseInt,
		"parseJSON":             parseJSON,
		"parseUint":             parseUint,
		"plugin":                plugin,
		"regexReplaceAll":       regexReplaceAll,
		"regexMatch":            regexMatch,
		"replaceAll":            replaceAll,
		"sha256Hex":             sha256Hex,
		"md5sum":                md5sum,
		"hmacSHA256Hex":         hmacSHA256Hex,
		"timestamp":             timestampFunc(now),
		"toLower":               toLower,
		"toJSON":                toJSON,
		"toJSONPretty":          toJSONPretty,
		"toUnescapedJSON":       toUnescapedJSON,
		"toUnescapedJSONPretty": toUnescapedJSONPretty,
		"toTitle":               toTitle,
		"toUpper":               toUpper,
		"split":                 split,
		"splitToMap":            splitToMap,
		"sockaddr":              sockaddr,
		"writeToFile":           writeToFile,

		"add":      add,
		"subtract": subtract,
		"multiply": multiply,
		"divide":   divide,
		"modulo":   modulo,
		"minimum":  minimum,
		"maximum":  maximum,
	}
	// consul-template functions cairn does not have: they parse, so that a
	// template using them elsewhere fails with a message saying why.
	for name, why := range unsupported {
		m[name] = unsupportedFunc(name, why)
	}
	for k, v := range sprig.TxtFuncMap() {
		m["sprig_"+k] = v
	}
	return m
}

// unsupported are consul-template functions that need Vault, Nomad,
// Consul Connect or a YAML/TOML library, none of which cairn has.
var unsupported = map[string]string{
	"secret":           "cairn has no Vault",
	"secrets":          "cairn has no Vault",
	"pkiCert":          "cairn has no Vault",
	"connect":          "cairn has no Consul Connect",
	"caRoots":          "cairn has no Consul Connect",
	"caLeaf":           "cairn has no Consul Connect",
	"nomadServices":    "cairn is not Nomad",
	"nomadService":     "cairn is not Nomad",
	"nomadVarList":     "cairn is not Nomad",
	"nomadVarListSafe": "cairn is not Nomad",
	"nomadVar":         "cairn is not Nomad",
	"nomadVarExists":   "cairn is not Nomad",
	"toYAML":           "use toJSON or toJSONPretty",
	"parseYAML":        "use parseJSON",
	"toTOML":           "use toJSON",
	"spew_dump":        "use printf \"%#v\"",
	"spew_printf":      "use printf",
	"spew_sdump":       "use printf \"%#v\"",
	"spew_sprintf":     "use printf",
}

func unsupportedFunc(name, why string) func(...any) (string, error) {
	return func(...any) (string, error) {
		return "", fmt.Errorf("%s is a consul-template function cairn does not support (%s)", name, why)
	}
}

func base64Decode(s string) (string, error) {
	v, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64Decode: %w", err)
	}
	return string(v), nil
}

func base64Encode(s string) (string, error) {
	return base64.StdEncoding.EncodeToString([]byte(s)), nil
}

func base64URLDecode(s string) (string, error) {
	v, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64URLDecode: %w", err)
	}
	return string(v), nil
}

func base64URLEncode(s string) (string, error) {
	return base64.URLEncoding.EncodeToString([]byte(s)), nil
}

// byKey groups pairs by their first path segment, keyed by the rest:
// "redis/a/b" goes to m["redis"]["a/b"]. Pairs with nothing after the
// first segment are left out.
func byKey(pairs []*KeyPair) (map[string]map[string]*KeyPair, error) {
	m := make(map[string]map[string]*KeyPair)
	for _, pair := range pairs {
		top, key, _ := strings.Cut(pair.Key, "/")
		if key == "" {
			continue
		}
		if _, ok := m[top]; !ok {
			m[top] = make(map[string]*KeyPair)
		}
		p := *pair
		p.Key = key
		m[top][key] = &p
	}
	return m, nil
}

// byTag groups services (of `service` or `services`) by tag; a service is
// in the group of each of its tags.
func byTag(in any) (map[string][]any, error) {
	m := make(map[string][]any)
	switch typed := in.(type) {
	case nil:
	case []*CatalogSnippet:
		for _, s := range typed {
			for _, t := range s.Tags {
				m[t] = append(m[t], s)
			}
		}
	case []*HealthService:
		for _, s := range typed {
			for _, t := range s.Tags {
				m[t] = append(m[t], s)
			}
		}
	default:
		return nil, fmt.Errorf("byTag: wrong argument type %T", in)
	}
	return m, nil
}

// byPort groups the instances of `service` by port.
func byPort(in any) (map[int][]any, error) {
	m := make(map[int][]any)
	switch typed := in.(type) {
	case nil:
	case []*HealthService:
		for _, s := range typed {
			m[s.Port] = append(m[s.Port], s)
		}
	default:
		return nil, fmt.Errorf("byPort: wrong argument type %T", in)
	}
	return m, nil
}

var byMetaUnsafe = regexp.MustCompile("[^a-zA-Z0-9_-]")

// byMeta groups instances by the values of one or more ServiceMeta keys
// ("zone,rack"; "weight|int" sorts numerically), joined with "_";
// instances without a key go to "_no_<key>_".
func byMeta(meta string, services []*HealthService) (map[string][]*HealthService, error) {
	valueOf := func(m map[string]string, key string) string {
		real := strings.TrimSuffix(key, "|int")
		if v := m[real]; v != "" {
			return v
		}
		if strings.HasSuffix(key, "|int") {
			return "0"
		}
		return fmt.Sprintf("_no_%s_", real)
	}
	metas := strings.Split(meta, ",")
	groups := make(map[string][]*HealthService)
	for _, s := range services {
		parts := make([]string, 0, len(metas))
		for _, key := range metas {
			v := valueOf(s.ServiceMeta, key)
			if strings.HasSuffix(key, "|int") {
				i, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("cannot parse %v as number : %w", v, err)
				}
				v = fmt.Sprintf("%05d", i)
			}
			parts = append(parts, byMetaUnsafe.ReplaceAllString(v, "_"))
		}
		key := strings.Join(parts, "_")
		groups[key] = append(groups[key], s)
	}
	return groups, nil
}

// contains is in with the arguments swapped, for pipes:
// {{ .Tags | contains "web" }}.
func contains(v, l any) (bool, error) { return in(l, v) }

// containsSome builds containsAll, containsAny, containsNone and
// containsNotAll: whether all, any, none or not all of v are in l.
func containsSome(retTrue, invert bool) func([]any, any) (bool, error) {
	return func(v []any, l any) (bool, error) {
		for _, x := range v {
			if ok, _ := in(l, x); ok != invert {
				return !retTrue, nil
			}
		}
		return retTrue, nil
	}
}

func mergeMap(dst, src map[string]any, opts ...func(*mergo.Config)) (map[string]any, error) {
	if err := mergo.Map(&dst, src, opts...); err != nil {
		return nil, err
	}
	return dst, nil
}

func mergeMapWithOverride(dst, src map[string]any) (map[string]any, error) {
	return mergeMap(dst, src, mergo.WithOverride)
}

// explode turns pairs into nested maps along their "/"-separated keys.
func explode(pairs []*KeyPair) (map[string]any, error) {
	m := make(map[string]any)
	for _, p := range pairs {
		if err := explodeInto(m, p.Key, p.Value, p.Key); err != nil {
			return nil, fmt.Errorf("explode: %w", err)
		}
	}
	return m, nil
}

func explodeInto(m map[string]any, k string, v any, path string) error {
	if strings.Contains(k, "/") {
		top, rest, _ := strings.Cut(k, "/")
		if _, ok := m[top]; !ok {
			m[top] = make(map[string]any)
		}
		nest, ok := m[top].(map[string]any)
		if !ok {
			return fmt.Errorf("not a map: %q: %q already has value %q", path, top, m[top])
		}
		return explodeInto(nest, rest, v, k)
	}
	if k != "" {
		m[k] = v
	}
	return nil
}

// explodeMap turns a flat map with "/"-separated keys into nested maps.
func explodeMap(in map[string]any) (map[string]any, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]any)
	for _, k := range keys {
		if err := explodeInto(out, k, in[k], k); err != nil {
			return nil, fmt.Errorf("explodeMap: %w", err)
		}
	}
	return out, nil
}

// in reports whether v is an element of the list l (numbers compare by
// value across sizes, strings by type and value), or a substring of the
// string l.
func in(l, v any) (bool, error) {
	lv, vv := reflect.ValueOf(l), reflect.ValueOf(v)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		// Elements of an []any must be unwrapped to see their kind.
		var anys []any
		if reflect.TypeOf(l).Elem().Kind() == reflect.Interface {
			anys, _ = l.([]any)
		}
		for i := 0; i < lv.Len(); i++ {
			e := lv.Index(i)
			if anys != nil {
				e = reflect.ValueOf(anys[i])
			}
			switch e.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				switch vv.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					if vv.Int() == e.Int() {
						return true, nil
					}
				}
			case reflect.Float32, reflect.Float64:
				switch vv.Kind() {
				case reflect.Float32, reflect.Float64:
					if vv.Float() == e.Float() {
						return true, nil
					}
				}
			case reflect.String:
				if vv.IsValid() && vv.Type() == e.Type() && vv.String() == e.String() {
					return true, nil
				}
			}
		}
	case reflect.String:
		if vv.IsValid() && vv.Type() == lv.Type() && strings.Contains(lv.String(), vv.String()) {
			return true, nil
		}
	}
	return false, nil
}

// indent puts spaces at the start of every line that is not empty.
func indent(spaces int, s string) (string, error) {
	if spaces < 0 {
		return "", errors.New("indent value must be a positive integer")
	}
	prefix := strings.Repeat(" ", spaces)
	var b strings.Builder
	startOfLine := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if startOfLine && c != '\n' {
			b.WriteString(prefix)
		}
		b.WriteByte(c)
		startOfLine = c == '\n'
	}
	return b.String(), nil
}

// loop yields start..stop-1 (loop 5: 0..4; loop 5 8: 5, 6, 7) on a
// channel, as consul-template's does. The channel is filled up front and
// closed, so no goroutine is left behind when a range breaks early.
func loop(args ...any) (<-chan int64, error) {
	to64 := func(i any) (int64, error) {
		v := reflect.ValueOf(i)
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return v.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int64(v.Uint()), nil
		case reflect.String:
			return parseInt(v.String())
		}
		return 0, fmt.Errorf("loop: bad argument type: %T", i)
	}
	var a, b any
	switch len(args) {
	case 1:
		a, b = 0, args[0]
	case 2:
		a, b = args[0], args[1]
	default:
		return nil, fmt.Errorf("loop: wrong number of arguments, expected 1 or 2, but got %d", len(args))
	}
	start, err := to64(a)
	if err != nil {
		return nil, err
	}
	stop, err := to64(b)
	if err != nil {
		return nil, err
	}
	const maxLoop = 1 << 20
	if stop-start > maxLoop {
		return nil, fmt.Errorf("loop: %d iterations is more than the %d cairn allows", stop-start, maxLoop)
	}
	ch := make(chan int64, max(stop-start, 0))
	for i := start; i < stop; i++ {
		ch <- i
	}
	close(ch)
	return ch, nil
}

func join(sep string, a []string) (string, error)       { return strings.Join(a, sep), nil }
func trim(cutset, s string) (string, error)             { return strings.Trim(s, cutset), nil }
func trimPrefix(prefix, s string) (string, error)       { return strings.TrimPrefix(s, prefix), nil }
func trimSuffix(suffix, s string) (string, error)       { return strings.TrimSuffix(s, suffix), nil }
func trimSpace(s string) (string, error)                { return strings.TrimSpace(s), nil }
func replaceAll(from, to, s string) (string, error)     { return strings.ReplaceAll(s, from, to), nil }
func toLower(s string) (string, error)                  { return strings.ToLower(s), nil }
func toUpper(s string) (string, error)                  { return strings.ToUpper(s), nil }
func hmacSHA256Hex(message, key string) (string, error) { return hmacHex(message, key), nil }

func hmacHex(message, key string) string {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(message))
	return hex.EncodeToString(h.Sum(nil))
}

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("parseBool: %w", err)
	}
	return v, nil
}

func parseFloat(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parseFloat: %w", err)
	}
	return v, nil
}

func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parseInt: %w", err)
	}
	return v, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parseUint: %w", err)
	}
	return v, nil
}

// parseJSON decodes s; "" is an empty object.
func parseJSON(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var data any
	if err := json.Unmarshal([]byte(s), &data); err != nil {
		return nil, err
	}
	return data, nil
}

// plugin runs an executable with the (trimmed, non-empty) arguments and
// returns its trimmed stdout; it gets 30 seconds.
func plugin(name string, args ...string) (string, error) {
	if name == "" {
		return "", nil
	}
	var argv []string
	for _, a := range args {
		if a = strings.TrimSpace(a); a != "" {
			argv = append(argv, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("exec %q: did not finish in 30s", name)
		}
		return "", fmt.Errorf("exec %q: %s\n\nstdout:\n\n%s\n\nstderr:\n\n%s", name, err, stdout.Bytes(), stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func regexReplaceAll(re, repl, s string) (string, error) {
	c, err := regexp.Compile(re)
	if err != nil {
		return "", err
	}
	return c.ReplaceAllString(s, repl), nil
}

func regexMatch(re, s string) (bool, error) {
	c, err := regexp.Compile(re)
	if err != nil {
		return false, err
	}
	return c.MatchString(s), nil
}

func sha256Hex(s string) (string, error) {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:]), nil
}

func md5sum(s string) (string, error) { return fmt.Sprintf("%x", md5.Sum([]byte(s))), nil }

// split splits s (trimmed) at sep; an empty s gives an empty list.
func split(sep, s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, sep), nil
}

// splitToMap splits s at sep1 and each part at the first sep2 into a
// key and a value; parts without sep2 are left out.
func splitToMap(sep1, sep2, s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	m := make(map[string]string)
	if s == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, sep1) {
		if k, v, ok := strings.Cut(part, sep2); ok {
			m[k] = v
		}
	}
	return m, nil
}

// timestampFunc is timestamp: now in UTC as RFC 3339, or in the given
// layout, or "unix" seconds.
func timestampFunc(now func() time.Time) func(...string) (string, error) {
	return func(s ...string) (string, error) {
		switch len(s) {
		case 0:
			return now().UTC().Format(time.RFC3339), nil
		case 1:
			if s[0] == "unix" {
				return strconv.FormatInt(now().Unix(), 10), nil
			}
			return now().UTC().Format(s[0]), nil
		}
		return "", fmt.Errorf("timestamp: wrong number of arguments, expected 0 or 1, but got %d", len(s))
	}
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toJSON: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("toJSONPretty: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

func toUnescapedJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("toUnescapedJSON: %w", err)
	}
	return strings.TrimRight(b.String(), "\r\n"), nil
}

func toUnescapedJSONPretty(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("toUnescapedJSONPretty: %w", err)
	}
	return strings.TrimRight(b.String(), "\r\n"), nil
}

// toTitle upper-cases the first letter of every word and leaves the rest
// alone, as consul-template's cases.Title(language.Und, cases.NoLower)
// does for text made of letters, digits, spaces and punctuation. A word
// starts after anything that is not a letter, a digit or an apostrophe.
func toTitle(s string) (string, error) {
	var b strings.Builder
	inWord := false
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' || r == '’' {
			if !inWord && unicode.IsLetter(r) {
				r = unicode.ToTitle(r)
			}
			inWord = true
		} else {
			inWord = false
		}
		b.WriteRune(r)
	}
	return b.String(), nil
}

// sockaddr evaluates a go-sockaddr template: {{ sockaddr "GetPrivateIP" }}.
func sockaddr(args ...string) (string, error) {
	return socktmpl.Parse(fmt.Sprintf("{{ %s }}", strings.Join(args, " ")))
}

// writeToFile writes the piped content to path with the given owner, group
// and octal permissions; flags "append" and "newline" as consul-template.
func writeToFile(path, username, groupName, permissions string, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("writeToFile: no content to write")
	}
	flags := ""
	if len(args) == 2 {
		flags = args[0]
	}
	content := args[len(args)-1]
	p, err := strconv.ParseUint(permissions, 8, 32)
	if err != nil {
		return "", err
	}
	perm := os.FileMode(p)
	var f *os.File
	if strings.Contains(flags, "append") {
		f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, perm)
	} else {
		if err := os.MkdirAll(filepath.Dir(path), os.ModePerm); err != nil {
			return "", err
		}
		f, err = os.Create(path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	data := []byte(content)
	if strings.Contains(flags, "newline") {
		data = append(data, '\n')
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if username != "" || groupName != "" {
		uid, gid := os.Getuid(), os.Getgid()
		if username != "" {
			if u, err := user.Lookup(username); err == nil {
				uid, _ = strconv.Atoi(u.Uid)
			} else if uid, err = strconv.Atoi(username); err != nil {
				return "", fmt.Errorf("writeToFile: unknown user %q", username)
			}
		}
		if groupName != "" {
			if g, err := user.LookupGroup(groupName); err == nil {
				gid, _ = strconv.Atoi(g.Gid)
			} else if gid, err = strconv.Atoi(groupName); err != nil {
				return "", fmt.Errorf("writeToFile: unknown group %q", groupName)
			}
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return "", err
		}
	}
	return "", os.Chmod(path, perm)
}
