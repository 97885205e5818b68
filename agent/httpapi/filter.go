package httpapi

import (
	"fmt"
	"reflect"

	"github.com/hashicorp/go-bexpr"
)

// filter is a parsed ?filter= expression, in Consul's language and with
// Consul's own evaluator, github.com/hashicorp/go-bexpr
// (https://developer.hashicorp.com/consul/api-docs/features/filtering):
//
//	Service.Tags contains "primary" and not (Node.Meta.env == "dev")
//	"web" in ServiceTags or ServiceMeta["version"] matches "^2\\."
//	any Checks as c { c.Status == "critical" }
//	Service.Meta is not empty
//
// It is evaluated against each item of the answer in the Go type that
// writes the item's JSON (the agent/consuljson types), whose field names
// are Consul's, so the selectors are the endpoint's JSON field names, as
// in Consul. bexpr's rules hold as they are:
//   - an unknown selector (ServiceNmae) is an error, not an absent value:
//     the answer is 400, never a silently empty list;
//   - a value that does not convert to the field's type (ServicePort ==
//     web) is an error, 400;
//   - a missing map key (Meta.nope) is absent: == is false, != is true;
//   - a selector does not reach through a list (Checks.Status is an
//     error); use "any Checks as c { ... }" or "all ...";
//   - an item list that is empty is never evaluated, so it is answered
//     empty whatever the expression (as in Consul).
type filter struct{ eval *bexpr.Evaluator }

// parseFilter parses expr; the error is Consul's text for a filter that
// does not parse.
func parseFilter(expr string) (*filter, error) {
	eval, err := bexpr.CreateEvaluator(expr)
	if err != nil {
		return nil, fmt.Errorf("Failed to create boolean expression evaluator: %v", err)
	}
	return &filter{eval: eval}, nil
}

// apply keeps the elements of a slice, or the values of a map, for which
// the filter holds, keeping their own types (so the answer's JSON is
// unchanged but for what was filtered out). An expression that cannot be
// evaluated against an item (an unknown selector, a value of the wrong
// type, a bad regular expression) is the caller's mistake: a 400 with
// bexpr's text, which is what Consul answers.
func (f *filter) apply(out any) (any, error) {
	if f == nil || out == nil {
		return out, nil
	}
	v := reflect.ValueOf(out)
	switch v.Kind() {
	case reflect.Slice:
		kept := reflect.MakeSlice(v.Type(), 0, v.Len())
		for i := range v.Len() {
			ok, err := f.holds(v.Index(i))
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
			ok, err := f.holds(it.Value())
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

func (f *filter) holds(item reflect.Value) (bool, error) {
	ok, err := f.eval.Evaluate(item.Interface())
	if err != nil {
		return false, badRequest("%v", err)
	}
	return ok, nil
}
