package agent

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// Service and check definitions in config files: Consul's service {},
// services [], check {} and checks [] keys. They are kept in the JSON of
// Consul's agent API (the body of /v1/agent/service/register and
// /v1/agent/check/register) and registered at start through the same
// decoder the HTTP API uses (httpapi.ParseServiceRegistration), so a
// definition means the same wherever it comes from.

func isDefinitionKey(key string) bool {
	switch key {
	case "service", "services", "check", "checks":
		return true
	}
	return false
}

// readDefinitions adds the definitions of one service/services/check/
// checks item to cfg, checked with the HTTP API's rules.
func readDefinitions(cfg *Config, key string, item *ast.ObjectItem) error {
	var v any
	if err := hcl.DecodeObject(&v, item.Val); err != nil {
		return err
	}
	var defs []any
	switch key {
	case "service", "check":
		m, err := oneObject(v)
		if err != nil {
			return err
		}
		defs = []any{m}
	default:
		list, err := objectList(v)
		if err != nil {
			return err
		}
		defs = list
	}
	for i, d := range defs {
		norm, err := apiKeys(d, "")
		if err != nil {
			return err
		}
		b, err := json.Marshal(norm)
		if err != nil {
			return err
		}
		what := key
		if key == "services" || key == "checks" {
			what = fmt.Sprintf("%s[%d]", key, i)
		}
		if strings.HasPrefix(key, "service") {
			if _, err := parseServiceDefinition(b); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			cfg.Services = append(cfg.Services, b)
		} else {
			if _, err := parseCheckDefinition(b); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			cfg.Checks = append(cfg.Checks, b)
		}
	}
	return nil
}

// listKeys are the keys of Consul's service and check definitions whose
// values are lists of objects; hcl decodes a single block as a list of
// one, and a JSON list of one as the object itself.
var listKeys = setOf("checks", "upstreams", "paths", "ports", "envoy_extensions", "envoyextensions", "services")

// userKeys are maps whose keys are the user's own (meta, headers, tagged
// address names, free-form proxy config): their keys stay as written.
var userKeys = setOf("meta", "node_meta", "header", "tagged_addresses", "taggedaddresses", "config", "arguments")

// apiKeys turns a definition decoded from HCL or JSON, with Consul's
// config-file keys (snake_case: service_id, deregister_critical_service_after),
// into the agent API's JSON, whose field names are the same words in
// CamelCase (ServiceID, DeregisterCriticalServiceAfter), so that what is
// kept as written (Proxy, Connect) reads as the API writes it. Nested
// blocks decoded as lists of one become objects.
//
// key is matched case-blind against listKeys and userKeys: Consul's own
// tests write "Meta" in a JSON config file.
func apiKeys(v any, key string) (any, error) {
	key = strings.ToLower(key)
	switch x := v.(type) {
	case []map[string]any:
		list := make([]any, len(x))
		for i, m := range x {
			list[i] = m
		}
		return apiKeys(list, key)
	case []any:
		if !listKeys[key] && len(x) > 0 {
			if _, isObj := x[0].(map[string]any); isObj {
				if len(x) > 1 {
					return nil, fmt.Errorf("%s is given %d times; give it once", key, len(x))
				}
				return apiKeys(x[0], key)
			}
		}
		out := make([]any, len(x))
		for i, e := range x {
			n, err := apiKeys(e, "") // an element: its own keys decide
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		if listKeys[key] {
			n, err := apiKeys(x, "")
			if err != nil {
				return nil, err
			}
			return []any{n}, nil
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			nk := k
			if !userKeys[key] {
				nk = camel(k)
			}
			childKey := k
			if userKeys[key] {
				childKey = "" // a value under a user's key: an ordinary object
			}
			n, err := apiKeys(e, childKey)
			if err != nil {
				return nil, err
			}
			out[nk] = n
		}
		return out, nil
	}
	return v, nil
}

func oneObject(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case []map[string]any:
		if len(x) == 1 {
			return x[0], nil
		}
	case []any:
		if len(x) == 1 {
			if m, ok := x[0].(map[string]any); ok {
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("want one definition (an object), got %T; use the plural key for a list", v)
}

func objectList(v any) ([]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return []any{x}, nil
	case []map[string]any:
		out := make([]any, len(x))
		for i, m := range x {
			out[i] = m
		}
		return out, nil
	case []any:
		for _, e := range x {
			if _, ok := e.(map[string]any); !ok {
				return nil, fmt.Errorf("want a list of definitions (objects), found %T in it", e)
			}
		}
		return x, nil
	}
	return nil, fmt.Errorf("want a list of definitions (objects), got %T", v)
}

func parseServiceDefinition(b []byte) (catalog.ServiceDefinition, error) {
	return httpapi.ParseServiceRegistration(b)
}

func parseCheckDefinition(b []byte) (checks.Definition, error) {
	return httpapi.ParseCheckRegistration(b)
}

// acronyms are the words Consul's field names write in capitals.
var acronyms = setOf("id", "ip", "http", "https", "tcp", "udp", "ttl", "tls", "grpc", "dns", "url", "os", "sni", "h2ping", "acl")

// camel is a snake_case key in CamelCase with Consul's acronyms
// (service_id: ServiceID); a key without underscores keeps its letters
// and gets a capital first one.
func camel(k string) string {
	var b strings.Builder
	for _, part := range strings.Split(k, "_") {
		if part == "" {
			continue
		}
		if acronyms[part] {
			b.WriteString(strings.ToUpper(part))
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
