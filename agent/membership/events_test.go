package membership

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-memdb"
)

// runEvents starts m's user events, run until the test ends.
func runEvents(t *testing.T, m *testMember, accept func(UserEvent) bool) *Events {
	t.Helper()
	ev, err := m.NewEvents(FirstComponentKind+1, EventsConfig{Accept: accept})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ev.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ev
}

// waitEvents blocks on ev's watch set until cond holds for its list.
func waitEvents(t *testing.T, ev *Events, what string, cond func([]UserEvent) bool) []UserEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		list := ev.List(ws)
		if cond(list) {
			return list
		}
		if err := ws.WatchCtx(ctx); err != nil {
			t.Fatalf("waiting for %s: %v; last list has %d events", what, err, len(list))
		}
	}
}

func TestEventsKeepTheNewest256(t *testing.T) {
	m := newMember(t, "a")
	ev := runEvents(t, m, nil)
	const n = EventBufferSize + 44
	for i := range n {
		if _, err := ev.Fire(UserEvent{Name: fmt.Sprintf("e%d", i)}); err != nil {
			t.Fatalf("Fire(e%d): %v", i, err)
		}
	}
	list := waitEvents(t, ev, "the last event", func(l []UserEvent) bool {
		return len(l) > 0 && l[len(l)-1].Name == fmt.Sprintf("e%d", n-1)
	})
	if len(list) != EventBufferSize || list[0].Name != "e44" {
		t.Errorf("List() has %d events from %s, want %d from e44", len(list), list[0].Name, EventBufferSize)
	}
	for i := 1; i < len(list); i++ {
		if list[i].LTime <= list[i-1].LTime {
			t.Fatalf("List()[%d].LTime = %d after %d: not in firing order", i, list[i].LTime, list[i-1].LTime)
		}
	}
}

// TestEventsSpreadButNotTheirPast: an agent that joins receives the
// events fired after it joined, once each, and not those fired before
// (Consul joins with serf's ignoreOld); the Accept filter decides what
// is kept where.
func TestEventsSpreadButNotTheirPast(t *testing.T) {
	a, b := newMember(t, "a"), newMember(t, "b")
	evA := runEvents(t, a, nil)
	evB := runEvents(t, b, func(e UserEvent) bool { return e.NodeFilter == "" || e.NodeFilter == "b" })
	if _, err := evA.Fire(UserEvent{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	b.join(t, a)
	for _, e := range []UserEvent{{Name: "for-a", NodeFilter: "a"}, {Name: "after", Payload: []byte("p")}} {
		if _, err := evA.Fire(e); err != nil {
			t.Fatal(err)
		}
	}
	list := waitEvents(t, evB, "the event fired after the join", func(l []UserEvent) bool { return len(l) > 0 })
	if len(list) != 1 || list[0].Name != "after" || string(list[0].Payload) != "p" {
		t.Errorf("b's events = %+v, want only \"after\" with payload p", list)
	}
}

func TestValidateEvent(t *testing.T) {
	tests := []struct {
		name string
		ev   UserEvent
		want string
	}{
		{"no name", UserEvent{}, "the event has no name"},
		{"bad service filter", UserEvent{Name: "x", ServiceFilter: "["}, "Invalid service filter"},
		{"tag without service", UserEvent{Name: "x", TagFilter: "t"}, "cannot provide tag filter without service filter"},
		{"too large", UserEvent{Name: "x", Payload: make([]byte, MaxEventSize)}, "exceeds limit of 512 bytes"},
		{"fine", UserEvent{Name: "x", ServiceFilter: "web", TagFilter: "v1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateEvent(tc.ev)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tc.want == "" && err != nil || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("ValidateEvent(%+v) = %q, want %q", tc.ev, got, tc.want)
			}
		})
	}
}
