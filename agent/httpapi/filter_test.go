package httpapi

import (
	"testing"

	"github.com/cairn-dev/cairn/agent/consuljson"
)

// entry is a /v1/health/service answer item, in the types the handler
// filters.
func entry() consuljson.ServiceEntry {
	return consuljson.ServiceEntry{
		Node: &consuljson.Node{Node: "n1", Meta: map[string]string{"env": "prod"}, TaggedAddresses: map[string]string{}},
		Service: &consuljson.Service{Service: "web", Tags: []string{"primary", "v2"}, Port: 8080,
			Meta: map[string]string{"version": "2.1"}, Address: ""},
		Checks: []*consuljson.Check{{Status: "passing", Name: "serfHealth"}, {Status: "critical", Name: "http"}},
	}
}

// TestFilterExpressions pins go-bexpr's semantics as Consul applies them
// to an answer's items: the result of each expression, or its error.
func TestFilterExpressions(t *testing.T) {
	tests := []struct {
		name, expr string
		want       bool
		wantErr    string // the whole error text; "" for none
	}{
		{name: "bare value", expr: `Service.Service == web`, want: true},
		{name: "quoted value", expr: `Service.Service == "web"`, want: true},
		{name: "not equal", expr: `Service.Service != web`, want: false},
		{name: "number", expr: `Service.Port == 8080`, want: true},
		{name: "number as text", expr: `Service.Port == "8080"`, want: true},
		{name: "list contains", expr: `Service.Tags contains primary`, want: true},
		{name: "list not contains", expr: `Service.Tags not contains primary`, want: false},
		{name: "in list", expr: `"v2" in Service.Tags`, want: true},
		{name: "not in list", expr: `v3 not in Service.Tags`, want: true},
		{name: "matches", expr: `Service.Meta.version matches "^2\\."`, want: true},
		{name: "map index", expr: `Service.Meta["version"] == "2.1"`, want: true},
		{name: "map contains key", expr: `Service.Meta contains version`, want: true},
		{name: "missing map key equal", expr: `Service.Meta.nope == x`, want: false},
		{name: "missing map key not equal", expr: `Service.Meta.nope != x`, want: true},
		{name: "and not", expr: `Node.Meta.env == prod and not (Service.Service == db)`, want: true},
		{name: "or", expr: `Node.Node == n2 or Service.Port == 8080`, want: true},
		{name: "any element", expr: `any Checks as c { c.Status == critical }`, want: true},
		{name: "all elements", expr: `all Checks as c { c.Status != critical }`, want: false},
		{name: "empty text", expr: `Service.Address is empty`, want: true},
		{name: "map not empty", expr: `Service.Meta is not empty`, want: true},
		{name: "and binds tighter than or", expr: `Service.Service == web and Service.Port == 1 or Node.Node == n1`, want: true},
		{name: "parentheses", expr: `Service.Service == web and (Service.Port == 1 or Node.Node == n2)`, want: false},

		// The mistakes that a private dialect answered with an empty
		// list are errors in bexpr, as in Consul.
		{name: "unknown selector", expr: `Service.Missing == x`,
			wantErr: `error finding value in datum: /Service/Missing at part 1: couldn't find key: struct field with name "Missing"`},
		{name: "unknown top-level selector", expr: `ServiceNmae == "web"`,
			wantErr: `error finding value in datum: /ServiceNmae at part 0: couldn't find key: struct field with name "ServiceNmae"`},
		{name: "unknown selector is empty", expr: `Service.Missing is empty`,
			wantErr: `error finding value in datum: /Service/Missing at part 1: couldn't find key: struct field with name "Missing"`},
		{name: "type mismatch", expr: `Service.Port == web`,
			wantErr: `error getting match value in expression: strconv.ParseInt: parsing "web": invalid syntax`},
		{name: "selector through a list", expr: `Checks.Status == critical`,
			wantErr: `error finding value in datum: /Checks/Status at part 1: couldn't convert value "Status" to type int`},
		{name: "bad regular expression", expr: `Service.Service matches "("`,
			wantErr: "failed to compile regular expression \"(\": error parsing regexp: missing closing ): `(`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFilter(tc.expr)
			if err != nil {
				t.Fatalf("parseFilter(%s) = %v, want it to parse", tc.expr, err)
			}
			kept, err := f.apply([]consuljson.ServiceEntry{entry()})
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Fatalf("filter %s: error %q, want %q", tc.expr, gotErr, tc.wantErr)
			}
			if err != nil {
				if code, _ := statusOf(err); code != 400 {
					t.Errorf("filter %s: status %d, want 400", tc.expr, code)
				}
				return
			}
			if got := len(kept.([]consuljson.ServiceEntry)) == 1; got != tc.want {
				t.Errorf("filter %s = %v, want %v", tc.expr, got, tc.want)
			}
		})
	}
}

// TestFilterErrors: expressions that do not parse, with Consul's text.
func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct{ name, expr, want string }{
		{"no value", `Service ==`,
			`Failed to create boolean expression evaluator: 1:11 (10): no match found, expected: "-", "0", "\"", "` + "`" + `", [ \t\r\n], [1-9] or [a-zA-Z]`},
		{"single =", `Service.Service = web`,
			`Failed to create boolean expression evaluator: 1:17 (16): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]`},
		{"unclosed (", `(Service.Service == web`,
			`Failed to create boolean expression evaluator: 1:24 (23): rule "grouping": Unmatched parentheses`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFilter(tc.expr)
			if err == nil || err.Error() != tc.want {
				t.Errorf("parseFilter(%s) = %v\nwant %s", tc.expr, err, tc.want)
			}
		})
	}
}

// FuzzParseFilter: no expression makes the parser or the evaluator panic.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`Service.Service == web`, `"v2" in Service.Tags`, `not (a == b or c is not empty)`,
		`Service.Meta["version"] matches "^2"`, `Checks.Status != critical and Node.Node == n1`, `((`, `a[`, `"`,
		`any Checks as c { c.Status == critical }`, `Service.Port == web`} {
		f.Add(s)
	}
	items := []consuljson.ServiceEntry{entry()}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := parseFilter(expr)
		if err != nil {
			return
		}
		flt.apply(items)
	})
}
