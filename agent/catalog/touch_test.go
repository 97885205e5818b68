package catalog

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
)

// TestTouch: touching a service moves its index, wakes its watchers and
// shows in the change feed; other services and unknown names are left
// alone.
func TestTouch(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive).snapshot()
	c.receive(inMsg{buf: record("a", 1, remoteState("a", "web", "db"))}, members, nil)
	since, _, _ := c.Changes(nil, 0)
	webIdx, _ := c.ServiceHealth(nil, "web", Filter{})
	dbWS := memdb.NewWatchSet()
	dbIdx, _ := c.ServiceHealth(dbWS, "db", Filter{})
	webWS := memdb.NewWatchSet()
	c.ServiceNodes(webWS, "web", Filter{})

	c.Touch("WEB", "nosuch")

	if !fired(webWS) {
		t.Errorf("a watcher of web did not wake")
	}
	if fired(dbWS) {
		t.Errorf("a watcher of db woke")
	}
	if idx, _ := c.ServiceHealth(nil, "web", Filter{}); idx <= webIdx {
		t.Errorf("web's index = %d after Touch, want above %d", idx, webIdx)
	}
	if idx, _ := c.ServiceHealth(nil, "db", Filter{}); idx != dbIdx {
		t.Errorf("db's index moved: %d -> %d", dbIdx, idx)
	}
	_, names, reset := c.Changes(nil, since)
	if diff := cmp.Diff([]string{"web"}, names); reset || diff != "" {
		t.Errorf("change feed after Touch (reset %v) (-want +got):\n%s", reset, diff)
	}
	before := c.Index()
	c.Touch("nosuch")
	if c.Index() != before {
		t.Errorf("touching an unknown name moved the index")
	}
}
