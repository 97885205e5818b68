package catalog

import "testing"

func TestAggregateStatus(t *testing.T) {
	tests := []struct {
		name     string
		statuses []string
		want     string
	}{
		{"no checks is passing", nil, StatusPassing},
		{"all passing", []string{StatusPassing, StatusPassing}, StatusPassing},
		{"a warning wins over passing", []string{StatusPassing, StatusWarning}, StatusWarning},
		{"critical wins over warning", []string{StatusWarning, StatusCritical, StatusPassing}, StatusCritical},
		{"an unknown status counts as critical", []string{StatusPassing, "maintenance"}, StatusCritical},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Instance
			for i, s := range tc.statuses {
				in.Checks = append(in.Checks, &Check{CheckID: string(rune('a' + i)), Status: s})
			}
			if got := in.Status(); got != tc.want {
				t.Errorf("AggregateStatus(%q) = %q, want %q", tc.statuses, got, tc.want)
			}
		})
	}
}
