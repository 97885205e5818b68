package httpapi

import "testing"

func TestBlockingIndex(t *testing.T) {
	for raw, want := range map[string]bool{
		"":                         false,
		"index=12":                 true,
		"recurse&index=12&wait=5s": true,
		"index=0":                  false,
		"index=":                   false,
		"modifyindex=4":            false,
		"keys&separator=/":         false,
	} {
		if got := blockingIndex(raw); got != want {
			t.Errorf("blockingIndex(%q) = %v, want %v", raw, got, want)
		}
	}
}
