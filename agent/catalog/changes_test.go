package catalog

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
)

// TestChanges pins the change feed: each step names exactly the services
// whose health answers it changed, deletions included, and wakes a
// watcher only when it changed something.
func TestChanges(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive, "b", MemberAlive).snapshot()
	v := uint64(0)
	publish := func(origin string, nodes []nodeState) func() {
		return func() {
			v++
			c.receive(inMsg{buf: record(origin, v, nodes)}, members, nil)
		}
	}
	webCheck := remoteState("a", "web", "db")
	webCheck[0].Checks = []*Check{{CheckID: "web-ok", Name: "web", Status: StatusCritical, ServiceID: "web", ServiceName: "web"}}
	nodeCheck := remoteState("a", "web", "db")
	nodeCheck[0].Checks = []*Check{{CheckID: "mem", Name: "mem", Status: StatusWarning}}

	since, _, reset := c.Changes(nil, 0)
	if !reset {
		t.Fatal("Changes(0) did not ask for a full read")
	}
	for _, step := range []struct {
		name string
		do   func()
		want []string
	}{
		{"a registers web and DB (names are lower-cased)", publish("a", remoteState("a", "web", "DB/db")), []string{"db", "web"}},
		{"the same state again", publish("a", remoteState("a", "web", "DB/db")), nil},
		{"DB is renamed db", publish("a", remoteState("a", "web", "db")), []string{"db"}},
		{"b registers api", publish("b", remoteState("b", "api")), []string{"api"}},
		{"a's web check goes critical", publish("a", webCheck), []string{"web"}},
		{"a node check: every service on a", publish("a", nodeCheck), []string{"db", "web"}},
		{"a drops db and the node check", publish("a", remoteState("a", "web")), []string{"db", "web"}},
		{"b fails: its instances turn critical", func() {
			members["b"] = MemberFailed
			c.reconcile("b", members, nil)
		}, []string{"api"}},
		{"a registers db again", publish("a", remoteState("a", "web", "db")), []string{"db"}},
	} {
		ws := memdb.NewWatchSet()
		c.Changes(ws, since)
		step.do()
		idx, names, reset := c.Changes(nil, since)
		slices.Sort(names)
		if reset {
			t.Fatalf("%s: Changes(%d) asked for a full read", step.name, since)
		}
		if diff := cmp.Diff(step.want, names); diff != "" {
			t.Errorf("%s: Changes(%d) names (-want +got):\n%s", step.name, since, diff)
		}
		if got := fired(ws); got != (len(step.want) > 0) {
			t.Errorf("%s: watch fired = %v, want %v", step.name, got, len(step.want) > 0)
		}
		if idx < since {
			t.Errorf("%s: index went back from %d to %d", step.name, since, idx)
		}
		since = idx
	}
}

// TestChangesResetAfterTombstones: deletions past maxTombstones drop the
// tombstones, and a reader from before that is told to start over.
func TestChangesResetAfterTombstones(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive).snapshot()
	names := make([]string, maxTombstones+1)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
	}
	c.receive(inMsg{buf: record("a", 1, remoteState("a", names...))}, members, nil)
	since, _, _ := c.Changes(nil, 1)
	c.receive(inMsg{buf: record("a", 2, remoteState("a"))}, members, nil)
	if _, _, reset := c.Changes(nil, since); !reset {
		t.Errorf("after %d deletions, Changes(%d) did not ask for a full read", len(names), since)
	}
	idx, _, _ := c.Changes(nil, 1)
	c.receive(inMsg{buf: record("a", 3, remoteState("a", "web"))}, members, nil)
	if _, got, reset := c.Changes(nil, idx); reset || !slices.Equal(got, []string{"web"}) {
		t.Errorf("after the reset, Changes(%d) = %v, reset %v; want [web], false", idx, got, reset)
	}
}

// TestChangesOrdersByIndex: the feed finds rows by numeric index, also
// where the bytes of a varint would sort otherwise (index 128 after 255).
func TestChangesOrdersByIndex(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive).snapshot()
	c.state.index.Store(120)
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("s%d", i))
		c.receive(inMsg{buf: record("a", uint64(i+1), remoteState("a", names...))}, members, nil)
	}
	for since := uint64(120); since < 140; since++ {
		_, got, _ := c.Changes(nil, since)
		if want := int(140 - since); len(got) != want {
			t.Errorf("Changes(%d) = %d names %v, want %d", since, len(got), got, want)
		}
	}
}
