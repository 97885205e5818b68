package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/kvtest"
)

// newGossipAPI serves the handler with a real membership (gossip on
// 127.0.0.1) behind /v1/event and /v1/coordinate.
func newGossipAPI(t *testing.T) (*testAPI, *membership.Membership) {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.BindPort, cfg.Fast = "test-node", "127.0.0.1", 0, true
	ml, err := membership.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	ev, err := ml.NewEvents(membership.FirstComponentKind+1, membership.EventsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ev.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ta := serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: testSelf(), Events: ev, Coordinates: ml}, nil)
	return ta, ml
}

func TestEventJSONAndIndex(t *testing.T) {
	ta, _ := newGossipAPI(t)
	resp, body := ta.do(t, http.MethodGet, "/v1/event/list", nil)
	if resp.StatusCode != 200 || body != "[]" || resp.Header.Get("X-Consul-Index") != "1" {
		t.Fatalf("empty list = %d %s index %q, want 200 [] index 1", resp.StatusCode, body, resp.Header.Get("X-Consul-Index"))
	}
	resp, body = ta.do(t, http.MethodPut, "/v1/event/fire/deploy?node=web-.*", strings.NewReader("v1"))
	if resp.StatusCode != 200 {
		t.Fatalf("fire = %d %s", resp.StatusCode, body)
	}
	var fired map[string]any
	if err := json.Unmarshal([]byte(body), &fired); err != nil {
		t.Fatal(err)
	}
	id := fired["ID"].(string)
	want := fmt.Sprintf(`{"ID":%q,"Name":"deploy","Payload":"djE=","NodeFilter":"web-.*","ServiceFilter":"","TagFilter":"","Version":1,"LTime":1}`, id)
	if body != want {
		t.Errorf("fire answered\n%s\nwant\n%s", body, want)
	}
	index := ta.client.Event().IDToIndex(id)
	resp, body = ta.do(t, http.MethodGet, "/v1/event/list?name=deploy", nil)
	if body != "["+want+"]" || resp.Header.Get("X-Consul-Index") != strconv.FormatUint(index, 10) {
		t.Errorf("list = %s index %s, want [the event] index %d", body, resp.Header.Get("X-Consul-Index"), index)
	}
	// A blocking list at the current index answers when its wait runs
	// out, with the same index; at any other index (the index is not
	// monotonic) it answers at once.
	start := time.Now()
	resp, _ = ta.do(t, http.MethodGet, fmt.Sprintf("/v1/event/list?index=%d&wait=200ms", index), nil)
	if resp.Header.Get("X-Consul-Index") != strconv.FormatUint(index, 10) || time.Since(start) < 200*time.Millisecond {
		t.Errorf("blocking list at the current index answered after %v with index %s", time.Since(start), resp.Header.Get("X-Consul-Index"))
	}
	resp, _ = ta.do(t, http.MethodGet, fmt.Sprintf("/v1/event/list?index=%d&wait=1m", index+1), nil)
	if resp.Header.Get("X-Consul-Index") != strconv.FormatUint(index, 10) {
		t.Errorf("list at another index answered index %s", resp.Header.Get("X-Consul-Index"))
	}

	errs := []struct{ method, path, want string }{
		{http.MethodPut, "/v1/event/fire/", "Missing name"},
		{http.MethodPut, "/v1/event/fire/x?tag=a", "cannot provide tag filter without service filter"},
		{http.MethodPut, "/v1/event/fire/x?service=(", "Invalid service filter"},
		{http.MethodGet, "/v1/event/fire/x", "method GET not allowed"},
	}
	for _, e := range errs {
		resp, body := ta.do(t, e.method, e.path, nil)
		if resp.StatusCode < 400 || !strings.Contains(body, e.want) {
			t.Errorf("%s %s = %d %s, want an error containing %q", e.method, e.path, resp.StatusCode, body, e.want)
		}
	}
}

func TestCoordinateJSON(t *testing.T) {
	ta, ml := newGossipAPI(t)
	resp, body := ta.do(t, http.MethodGet, "/v1/coordinate/nodes", nil)
	own, _ := json.Marshal(ml.Coordinate())
	if want := `[{"Node":"test-node","Segment":"","Coord":` + string(own) + `}]`; resp.StatusCode != 200 || body != want {
		t.Errorf("coordinate nodes = %d\n%s\nwant\n%s", resp.StatusCode, body, want)
	}
	if !strings.Contains(string(own), `"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0.00001`) {
		t.Errorf("a fresh coordinate is %s; want serf's origin with 8 dimensions", own)
	}
}
