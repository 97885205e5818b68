package preparedquery

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRender(t *testing.T) {
	tests := []struct {
		name  string
		q     Query
		asked string
		want  ServiceQuery
	}{
		{
			name:  "not a template: as it is",
			q:     Query{Name: "web", Service: ServiceQuery{Service: "${name.full}"}},
			asked: "web",
			want:  ServiceQuery{Service: "${name.full}"},
		},
		{
			name:  "name parts",
			q:     Query{Name: "geo-", Template: Template{Type: TemplateNamePrefixMatch}, Service: ServiceQuery{Service: "${name.suffix}", Tags: []string{"${name.prefix}", "${ name.full }"}}},
			asked: "geo-db",
			want:  ServiceQuery{Service: "db", Tags: []string{"geo-", "geo-db"}},
		},
		{
			name: "regexp groups, a missing group empty, empty tags removed",
			q: Query{Name: "", Template: Template{Type: TemplateNamePrefixMatch, Regexp: `^(\w+)-(\w+)$`, RemoveEmptyTags: true},
				Service: ServiceQuery{Service: "${match(1)}", Tags: []string{"${match(2)}", "${match(7)}"}, NodeMeta: map[string]string{"rack": "${match(2)}"}}},
			asked: "web-blue",
			want:  ServiceQuery{Service: "web", Tags: []string{"blue"}, NodeMeta: map[string]string{"rack": "blue"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.q.Render(tc.asked)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Service); diff != "" {
				t.Errorf("Render(%q) service (-want +got):\n%s", tc.asked, diff)
			}
		})
	}
	// Render copies: the stored query is unchanged.
	q := Query{Template: Template{Type: TemplateNamePrefixMatch}, Service: ServiceQuery{Service: "${name.full}", Tags: []string{"${name.full}"}}}
	if _, err := q.Render("x"); err != nil || q.Service.Tags[0] != "${name.full}" {
		t.Errorf("Render changed the query: %+v, %v", q.Service, err)
	}
}

func TestValidate(t *testing.T) {
	ok := ServiceQuery{Service: "web"}
	tests := []struct {
		name string
		q    Query
		want string // "" for valid
	}{
		{"plain", Query{Service: ok}, ""},
		{"catch-all template", Query{Template: Template{Type: TemplateNamePrefixMatch}, Service: ServiceQuery{Service: "${name.full}"}}, ""},
		{"no service", Query{}, "Must provide a Service name to query"},
		{"regexp without template", Query{Service: ok, Template: Template{Regexp: "x"}}, "needs Template.Type"},
		{"unknown template type", Query{Service: ok, Template: Template{Type: "regexp"}}, "Bad Template.Type 'regexp'"},
		{"bad regexp", Query{Service: ok, Template: Template{Type: TemplateNamePrefixMatch, Regexp: "("}}, "Bad Regexp"},
		{"unknown variable", Query{Template: Template{Type: TemplateNamePrefixMatch}, Service: ServiceQuery{Service: "${agent.name}"}}, "unknown variable or function ${agent.name}"},
		{"negative NearestN", Query{Service: ServiceQuery{Service: "web", Failover: FailoverOptions{NearestN: -1}}}, "Bad NearestN '-1'"},
		{"bad TTL", Query{Service: ok, DNS: DNSOptions{TTL: "1 minute"}}, "Bad DNS TTL '1 minute'"},
		{"negative TTL", Query{Service: ok, DNS: DNSOptions{TTL: "-1s"}}, "must be >=0"},
		{"peering", Query{Service: ServiceQuery{Service: "web", Peer: "other"}}, "cluster peering and sameness groups are not supported by cairn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.q.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)):
				t.Errorf("Validate() = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	qs := []*Query{
		{ID: "id-1", Name: "web"},
		{ID: "id-2", Name: "", Template: Template{Type: TemplateNamePrefixMatch}},
		{ID: "id-3", Name: "geo-", Template: Template{Type: TemplateNamePrefixMatch}},
		{ID: "id-4", Name: "geo-eu-", Template: Template{Type: TemplateNamePrefixMatch}},
	}
	tests := []struct{ asked, want string }{
		{"id-3", "id-3"},      // an ID
		{"web", "id-1"},       // an exact name over the catch-all
		{"geo-us-db", "id-3"}, // a prefix
		{"geo-eu-db", "id-4"}, // the longest prefix
		{"db", "id-2"},        // the catch-all
	}
	for _, tc := range tests {
		if got := resolve(qs, tc.asked); got == nil || got.ID != tc.want {
			t.Errorf("resolve(%q) = %v, want %s", tc.asked, got, tc.want)
		}
	}
	if got := resolve(qs[:1], "db"); got != nil {
		t.Errorf("resolve(db) without templates = %v, want nil", got)
	}
}
