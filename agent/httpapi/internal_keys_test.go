package httpapi_test

import (
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestInternalKeysLeftOutOfRootListings: cairn's own keys (_cairn/...)
// do not show in a listing of the root, which tools expect to hold only
// their keys (consul/api's TestAPI_ClientTxnWrite lists ""), and do show
// when asked for by their prefix.
func TestInternalKeysLeftOutOfRootListings(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	kvc := ta.client.KV()
	for _, k := range []string{"_cairn/gossip/key/n1", "_cairn/vip/service/web", "app/x", "_other"} {
		if _, err := kvc.Put(&api.KVPair{Key: k, Value: []byte("v")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	keysOf := func(ps api.KVPairs) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Key)
		}
		return out
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"_other", "app/x"}},
		{"_", []string{"_other"}},
		{"_cairn", []string{}},
		{"_cairn/", []string{"_cairn/gossip/key/n1", "_cairn/vip/service/web"}},
		{"_cairn/vip/", []string{"_cairn/vip/service/web"}},
	}
	for _, tc := range tests {
		ps, _, err := kvc.List(tc.prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(ps); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	keys, _, err := kvc.Keys("", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"_other", "app/"}; !slices.Equal(keys, want) {
		t.Errorf("Keys(\"\", \"/\") = %q, want %q", keys, want)
	}
	// A single key is always there for who names it.
	if p, _, err := kvc.Get("_cairn/vip/service/web", nil); err != nil || p == nil {
		t.Errorf("Get of an internal key: %v, %v", p, err)
	}
}
