package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFilterExpressions(t *testing.T) {
	const doc = `{"Node":{"Node":"n1","Meta":{"env":"prod"}},
		"Service":{"Service":"web","Tags":["primary","v2"],"Port":8080,"Meta":{"version":"2.1"},"Address":""},
		"Checks":[{"Status":"passing","Name":"serfHealth"},{"Status":"critical","Name":"http"}]}`
	var v any
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want bool
	}{
		{`Service.Service == web`, true},
		{`Service.Service == "web"`, true},
		{`Service.Service != web`, false},
		{`Service.Port == 8080`, true},
		{`Service.Tags contains primary`, true},
		{`Service.Tags not contains primary`, false},
		{`"v2" in Service.Tags`, true},
		{`v3 not in Service.Tags`, true},
		{`Service.Meta.version matches "^2\\."`, true},
		{`Service.Meta["version"] == "2.1"`, true},
		{`Service.Meta contains version`, true},
		{`Node.Meta.env == prod and not (Service.Service == db)`, true},
		{`Node.Node == n2 or Service.Port == 8080`, true},
		{`Checks.Status == critical`, true},
		{`Checks.Status != critical`, false},
		{`Service.Address is empty`, true},
		{`Service.Meta is not empty`, true},
		{`Service.Missing is empty`, true},
		{`Service.Missing == x`, false},
		{`Service.Service == web and Service.Port == 1 or Node.Node == n1`, true},
		{`Service.Service == web and (Service.Port == 1 or Node.Node == n2)`, false},
	}
	for _, tc := range tests {
		f, err := parseFilter(tc.expr)
		if err != nil {
			t.Errorf("parseFilter(%s): %v", tc.expr, err)
			continue
		}
		if got := f.root.eval(v); got != tc.want {
			t.Errorf("filter %s = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`Service ==`, `missing value after Service ==`},
		{`Service.Service = web`, `unexpected '=' at offset 16; use == or !=`},
		{`Service.Service web`, `unknown operator "web" after Service.Service`},
		{`(Service.Service == web`, `missing ) to close a (`},
		{`Service.Service == "web`, `unterminated string starting at offset 19`},
		{`Service.Service is full`, `expected "empty" after "is"`},
		{`Service.Service matches "("`, `bad regular expression "("`},
		{`Service.Service == web extra`, `unexpected "extra" at the end of the expression`},
	} {
		_, err := parseFilter(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFilter(%s) = %v, want an error containing %q", tc.expr, err, tc.want)
		}
	}
}

// FuzzParseFilter: no expression makes the parser or the evaluator panic.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`Service.Service == web`, `"v2" in Service.Tags`, `not (a == b or c is not empty)`,
		`Service.Meta["version"] matches "^2"`, `Checks.Status != critical and Node.Node == n1`, `((`, `a[`, `"`} {
		f.Add(s)
	}
	var doc any
	json.Unmarshal([]byte(`{"Service":{"Service":"web","Tags":["a"],"Meta":{"v":"1"}},"Checks":[{"Status":"passing"}],"N":1}`), &doc)
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := parseFilter(expr)
		if err != nil {
			return
		}
		flt.root.eval(doc)
	})
}
