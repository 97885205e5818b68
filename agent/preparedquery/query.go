package preparedquery

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Query is a prepared query, with Consul's JSON field names
// (api.PreparedQueryDefinition plus the Raft indexes Consul returns).
type Query struct {
	ID       string
	Name     string
	Session  string
	Token    string
	Template Template
	Service  ServiceQuery
	DNS      DNSOptions

	CreateIndex uint64
	ModifyIndex uint64
}

// Template makes a query answer every name it is a prefix of
// (api.QueryTemplate).
type Template struct {
	Type            string
	Regexp          string
	RemoveEmptyTags bool
}

// ServiceQuery is what a query looks up (api.ServiceQuery).
type ServiceQuery struct {
	Service        string
	SamenessGroup  string `json:",omitempty"`
	Namespace      string `json:",omitempty"`
	Partition      string `json:",omitempty"`
	Near           string
	Failover       FailoverOptions
	IgnoreCheckIDs []string
	OnlyPassing    bool
	Tags           []string
	NodeMeta       map[string]string
	ServiceMeta    map[string]string
	Peer           string `json:",omitempty"`
	Connect        bool
}

// FailoverOptions is api.QueryFailoverOptions. cairn has one datacenter,
// so it is kept but never used (see the package doc).
type FailoverOptions struct {
	NearestN    int
	Datacenters []string
	Targets     []FailoverTarget
}

// FailoverTarget is api.QueryFailoverTarget.
type FailoverTarget struct {
	Peer       string
	Datacenter string
	Partition  string `json:",omitempty"`
	Namespace  string `json:",omitempty"`
}

// DNSOptions is api.QueryDNSOptions.
type DNSOptions struct {
	TTL string
}

// TemplateNamePrefixMatch is the one template type Consul has.
const TemplateNamePrefixMatch = "name_prefix_match"

// Errors callers branch on (httpapi maps them to status codes).
var (
	// ErrNotFound: no query has that ID (or, for execute, that ID or name).
	ErrNotFound = errors.New("Query not found")
	// ErrInvalid: the definition is refused; the text says why.
	ErrInvalid = errors.New("invalid prepared query")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// IsTemplate reports whether q is a template.
func (q *Query) IsTemplate() bool { return q.Template.Type != "" }

// Validate checks a definition as Consul's parseQuery does, with Consul's
// texts where clients match them.
func (q *Query) Validate() error {
	switch q.Template.Type {
	case "":
		if q.Template.Regexp != "" {
			return invalid("a Template.Regexp needs Template.Type %q", TemplateNamePrefixMatch)
		}
	case TemplateNamePrefixMatch:
		if _, err := regexp.Compile(q.Template.Regexp); err != nil {
			return invalid("Bad Regexp: %v", err)
		}
		// Render once with a made-up name, as Consul compiles the
		// template, so that a bad interpolation fails now.
		if _, err := q.Render(q.Name + "x"); err != nil {
			return err
		}
	default:
		return invalid("Bad Template.Type '%s'; the only type is %q", q.Template.Type, TemplateNamePrefixMatch)
	}
	if q.Service.Service == "" {
		return invalid("Must provide a Service name to query")
	}
	if q.Service.Failover.NearestN < 0 {
		return invalid("Bad NearestN '%d', must be >= 0", q.Service.Failover.NearestN)
	}
	if q.Service.Peer != "" || q.Service.SamenessGroup != "" || len(q.Service.Failover.Targets) > 0 && hasPeer(q.Service.Failover.Targets) {
		return invalid("cluster peering and sameness groups are not supported by cairn; drop Service.Peer, Service.SamenessGroup and peer failover targets")
	}
	if q.DNS.TTL != "" {
		ttl, err := time.ParseDuration(q.DNS.TTL)
		if err != nil {
			return invalid("Bad DNS TTL '%s': %v", q.DNS.TTL, err)
		}
		if ttl < 0 {
			return invalid("DNS TTL '%d', must be >=0", ttl)
		}
	}
	for k := range q.Service.NodeMeta {
		if k == "" {
			return invalid("Couldn't load metadata pair: the NodeMeta key is empty")
		}
	}
	return nil
}

func hasPeer(ts []FailoverTarget) bool {
	for _, t := range ts {
		if t.Peer != "" {
			return true
		}
	}
	return false
}

// DNSTTL is the query's DNS TTL, and whether it sets one.
func (q *Query) DNSTTL() (time.Duration, bool) {
	if q.DNS.TTL == "" {
		return 0, false
	}
	d, err := time.ParseDuration(q.DNS.TTL)
	return d, err == nil
}

// interpolation matches HIL's ${...} as Consul's templates use it.
var interpolation = regexp.MustCompile(`\$\{\s*([^}]*?)\s*\}`)

var matchCall = regexp.MustCompile(`^match\(\s*(\d+)\s*\)$`)

// Render returns q for the name it was asked as (a template; a query
// that is not one is returned as it is): ${name.full}, ${name.prefix},
// ${name.suffix}, ${match(N)} (the Regexp's Nth group on the full name)
// and ${agent.segment} (always "") replaced in the Service fields, and
// empty tags dropped when RemoveEmptyTags. The result is a copy.
func (q *Query) Render(name string) (*Query, error) {
	out := q.clone()
	if !q.IsTemplate() {
		return out, nil
	}
	var groups []string
	if q.Template.Regexp != "" {
		re, err := regexp.Compile(q.Template.Regexp)
		if err != nil {
			return nil, invalid("Bad Regexp: %v", err)
		}
		groups = re.FindStringSubmatch(name)
	}
	vars := map[string]string{
		"name.full":     name,
		"name.prefix":   q.Name,
		"name.suffix":   strings.TrimPrefix(name, q.Name),
		"agent.segment": "",
	}
	var bad error
	sub := func(s string) string {
		return interpolation.ReplaceAllStringFunc(s, func(m string) string {
			expr := interpolation.FindStringSubmatch(m)[1]
			if v, ok := vars[expr]; ok {
				return v
			}
			if mm := matchCall.FindStringSubmatch(expr); mm != nil {
				i, _ := strconv.Atoi(mm[1])
				if i < len(groups) {
					return groups[i]
				}
				return ""
			}
			if bad == nil {
				bad = invalid("Failed to render template: unknown variable or function ${%s}; use name.full, name.prefix, name.suffix, match(N) or agent.segment", expr)
			}
			return m
		})
	}
	s := &out.Service
	s.Service = sub(s.Service)
	s.Near = sub(s.Near)
	for i := range s.Tags {
		s.Tags[i] = sub(s.Tags[i])
	}
	for i := range s.IgnoreCheckIDs {
		s.IgnoreCheckIDs[i] = sub(s.IgnoreCheckIDs[i])
	}
	for i := range s.Failover.Datacenters {
		s.Failover.Datacenters[i] = sub(s.Failover.Datacenters[i])
	}
	for k, v := range s.NodeMeta {
		s.NodeMeta[k] = sub(v)
	}
	for k, v := range s.ServiceMeta {
		s.ServiceMeta[k] = sub(v)
	}
	if bad != nil {
		return nil, bad
	}
	if q.Template.RemoveEmptyTags {
		kept := s.Tags[:0]
		for _, t := range s.Tags {
			if t != "" {
				kept = append(kept, t)
			}
		}
		s.Tags = kept
	}
	return out, nil
}

// clone copies q deeply enough for Render to change the copy.
func (q *Query) clone() *Query {
	c := *q
	s := &c.Service
	s.Tags = append([]string(nil), q.Service.Tags...)
	s.IgnoreCheckIDs = append([]string(nil), q.Service.IgnoreCheckIDs...)
	s.Failover.Datacenters = append([]string(nil), q.Service.Failover.Datacenters...)
	s.Failover.Targets = append([]FailoverTarget(nil), q.Service.Failover.Targets...)
	s.NodeMeta = cloneMap(q.Service.NodeMeta)
	s.ServiceMeta = cloneMap(q.Service.ServiceMeta)
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// resolve picks the query that idOrName names among qs, as Consul's
// PreparedQueryResolve: an ID, else an exact name, else the template
// whose name is the longest prefix of it. nil when none.
func resolve(qs []*Query, idOrName string) *Query {
	for _, q := range qs {
		if q.ID == idOrName {
			return q
		}
	}
	for _, q := range qs {
		if q.Name != "" && q.Name == idOrName {
			return q
		}
	}
	var best *Query
	for _, q := range qs {
		if q.IsTemplate() && strings.HasPrefix(idOrName, q.Name) && (best == nil || len(q.Name) > len(best.Name)) {
			best = q
		}
	}
	return best
}
