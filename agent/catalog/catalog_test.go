package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"

	"github.com/cairn-dev/cairn/agent/checks"
)

// fakeMembers is a Members whose statuses the test sets; every change
// closes the watch channel, as membership's table does.
type fakeMembers struct {
	mu     sync.Mutex
	index  uint64
	status map[string]MemberStatus
	watch  chan struct{}
}

func newFakeMembers(kv ...any) *fakeMembers {
	f := &fakeMembers{status: map[string]MemberStatus{}, watch: make(chan struct{})}
	for i := 0; i < len(kv); i += 2 {
		f.status[kv[i].(string)] = kv[i+1].(MemberStatus)
	}
	return f
}

func (f *fakeMembers) Members(ws memdb.WatchSet) (uint64, []Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ws != nil {
		ws.Add(f.watch)
	}
	var out []Member
	for n, s := range f.status {
		out = append(out, Member{Name: n, Status: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return f.index, out
}

func (f *fakeMembers) set(name string, s MemberStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s == "" { // reaped
		delete(f.status, name)
	} else {
		f.status[name] = s
	}
	f.index++
	close(f.watch)
	f.watch = make(chan struct{})
}

func (f *fakeMembers) snapshot() map[string]MemberStatus {
	_, ms := f.Members(nil)
	out := map[string]MemberStatus{}
	for _, m := range ms {
		out[m.Name] = m.Status
	}
	return out
}

func newTestCatalog(t *testing.T, opts ...func(*Config)) *Catalog {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "self"
	cfg.Address = "10.0.0.1"
	cfg.NodeID = "0d1c8a1e-6a35-4b2c-9f0e-2f4b1c3d5e6f"
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// remoteState is an agent's published state with one service per name.
func remoteState(node string, services ...string) []nodeState {
	ns := nodeState{Node: &Node{Node: node, Address: "10.0.1." + fmt.Sprint(len(node)), Datacenter: "dc1"}}
	for _, s := range services {
		name, id, _ := strings.Cut(s, "/")
		if id == "" {
			id = name
		}
		ns.Services = append(ns.Services, &Service{ID: id, Name: name, Port: 80, Weights: Weights{1, 1}})
	}
	return []nodeState{ns}
}

func record(origin string, version uint64, nodes []nodeState) []byte {
	return encodeRecord(origin, version, nodes)
}

// instances lists "node/serviceID/health" for a service.
func instances(c *Catalog, service string) []string {
	_, insts := c.ServiceHealth(nil, service, Filter{})
	var out []string
	for _, in := range insts {
		h := StatusPassing
		for _, ch := range in.Checks {
			if ch.Status != StatusPassing {
				h = ch.Status
			}
		}
		out = append(out, in.Node.Node+"/"+in.Service.ID+"/"+h)
	}
	return out
}

// TestVersionMergeRules: a state replaces the one held only with a higher
// version; this agent's own state never comes from others.
func TestVersionMergeRules(t *testing.T) {
	type msg struct {
		origin   string
		version  uint64
		services []string
	}
	tests := []struct {
		name string
		msgs []msg
		want []string // instances of "web"
	}{
		{"first state is taken", []msg{{"a", 5, []string{"web"}}}, []string{"a/web/passing"}},
		{"newer replaces", []msg{{"a", 5, []string{"web"}}, {"a", 6, []string{"web/web2"}}}, []string{"a/web2/passing"}},
		{"stale is ignored", []msg{{"a", 6, []string{"web/web2"}}, {"a", 5, []string{"web"}}}, []string{"a/web2/passing"}},
		{"equal version is ignored", []msg{{"a", 6, []string{"web"}}, {"a", 6, []string{"web/other"}}}, []string{"a/web/passing"}},
		{"deregistered stays gone", []msg{{"a", 5, []string{"web"}}, {"a", 7, nil}, {"a", 6, []string{"web"}}}, nil},
		{"origins are independent", []msg{{"a", 9, []string{"web"}}, {"b", 1, []string{"web"}}}, []string{"a/web/passing", "b/web/passing"}},
		{"own state from others is ignored", []msg{{"self", 1 << 62, []string{"web"}}}, nil},
		{"not a member is not shown", []msg{{"stranger", 1, []string{"web"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCatalog(t)
			members := newFakeMembers("self", MemberAlive, "a", MemberAlive, "b", MemberAlive).snapshot()
			for _, m := range tt.msgs {
				c.receive(inMsg{buf: record(m.origin, m.version, remoteState(m.origin, m.services...))}, members, nil)
			}
			if diff := cmp.Diff(tt.want, instances(c, "web")); diff != "" {
				t.Errorf("instances of web (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMembershipDecidesVisibility: alive shows an agent's entries with
// serfHealth passing, failed marks them critical at once, left removes
// them at once, and reaped (no longer a member) removes them too.
func TestMembershipDecidesVisibility(t *testing.T) {
	tests := []struct {
		status MemberStatus
		want   []string
	}{
		{MemberAlive, []string{"a/web/passing"}},
		{MemberLeaving, []string{"a/web/passing"}},
		{MemberFailed, []string{"a/web/critical"}},
		{MemberLeft, nil},
		{"", nil}, // reaped
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			c := newTestCatalog(t)
			fm := newFakeMembers("a", MemberAlive)
			c.receive(inMsg{buf: record("a", 1, remoteState("a", "web"))}, fm.snapshot(), nil)
			fm.set("a", tt.status)
			c.reconcile("a", fm.snapshot(), nil)
			if diff := cmp.Diff(tt.want, instances(c, "web")); diff != "" {
				t.Errorf("after status %q (-want +got):\n%s", tt.status, diff)
			}
			// And back to alive: shown again, passing.
			fm.set("a", MemberAlive)
			c.reconcile("a", fm.snapshot(), nil)
			if got := instances(c, "web"); !cmp.Equal(got, []string{"a/web/passing"}) {
				t.Errorf("alive again: instances = %v, want [a/web/passing]", got)
			}
		})
	}
}

// TestServiceIndexes: the index of an answer moves only when that answer
// can have changed.
func TestServiceIndexes(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive, "b", MemberAlive).snapshot()
	c.receive(inMsg{buf: record("a", 1, remoteState("a", "web", "db"))}, members, nil)
	c.receive(inMsg{buf: record("b", 1, remoteState("b", "db"))}, members, nil)

	type step struct {
		name    string
		do      func()
		webMove bool
		dbMove  bool
	}
	v := uint64(1)
	republish := func(origin string, nodes []nodeState) func() {
		return func() {
			v++
			c.receive(inMsg{buf: record(origin, v, nodes)}, members, nil)
		}
	}
	dbChanged := remoteState("a", "web", "db")
	dbChanged[0].Services[1].Port = 5432 // web, then db
	withNodeCheck := remoteState("a", "web", "db")
	withNodeCheck[0].Checks = []*Check{{CheckID: "mem", Name: "mem", Status: StatusWarning}}
	withWebCheck := remoteState("a", "web", "db")
	withWebCheck[0].Checks = []*Check{{CheckID: "web-ok", Name: "web", Status: StatusPassing, ServiceID: "web", ServiceName: "web"}}
	steps := []step{
		{"same state again", republish("a", remoteState("a", "web", "db")), false, false},
		{"db on another node", republish("b", remoteState("b", "db", "db/db2")), false, true},
		{"db port on a", republish("a", dbChanged), false, true},
		{"node check on a", republish("a", withNodeCheck), true, true},
		{"web check", republish("a", withWebCheck), true, true},
		{"a fails", func() {
			members["a"] = MemberFailed
			c.reconcile("a", members, nil)
		}, true, true},
		{"b fails", func() {
			members["b"] = MemberFailed
			c.reconcile("b", members, nil)
		}, false, true},
	}
	index := func(name string) uint64 {
		idx, _ := c.ServiceHealth(nil, name, Filter{})
		return idx
	}
	for _, s := range steps {
		web, db := index("web"), index("db")
		ws := memdb.NewWatchSet()
		c.ServiceHealth(ws, "web", Filter{})
		s.do()
		webNow, dbNow := index("web"), index("db")
		if moved := webNow != web; moved != s.webMove {
			t.Errorf("%s: web index %d -> %d; want moved=%v", s.name, web, webNow, s.webMove)
		}
		if moved := dbNow != db; moved != s.dbMove {
			t.Errorf("%s: db index %d -> %d; want moved=%v", s.name, db, dbNow, s.dbMove)
		}
		fired := fired(ws)
		if fired != s.webMove {
			t.Errorf("%s: web's watch fired = %v, want %v", s.name, fired, s.webMove)
		}
		if webNow > c.Index() || dbNow > c.Index() {
			t.Errorf("%s: an answer's index is above the catalog's %d", s.name, c.Index())
		}
	}
}

// fired reports whether one of the set's channels has closed, without
// waiting.
func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func TestRegisterServiceValidation(t *testing.T) {
	tests := []struct {
		name string
		def  ServiceDefinition
		want string
	}{
		{"no name", ServiceDefinition{Service: Service{ID: "x"}}, `Missing service name: give the service a "Name"`},
		{"port too high", ServiceDefinition{Service: Service{Name: "web", Port: 70000}}, `Invalid service port 70000 for service "web": a port is 0-65535 (0: none)`},
		{"any address", ServiceDefinition{Service: Service{Name: "web", Address: "0.0.0.0"}}, `Invalid service address "0.0.0.0" for service "web": it must be an address clients can reach; leave it empty to use the node's`},
		{"bad weights", ServiceDefinition{Service: Service{Name: "web", Weights: Weights{Passing: 0, Warning: 3}}}, `Passing must be greater than 0: service "web" has Weights.Passing=0; use 1 or more`},
		{"check without type", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{Interval: time.Second}}}, `Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval: check "service:web" has none of TTL, HTTP, TCP and ScriptArgs`},
		{"two types", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{TTL: time.Second, TCP: "a:1"}}}, `check "service:web" has TTL and TCP: give exactly one of TTL, HTTP, TCP and Args (ScriptArgs)`},
		{"http without interval", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{HTTP: "http://x/"}}}, `check "service:web": HTTP checks need an Interval, such as "10s"`},
		{"negative ttl", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{TTL: -time.Second}}}, `check "service:web": TTL=-1s is negative; give a positive duration such as "10s"`},
		{"script disabled", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{Args: []string{"true"}, Interval: time.Second}}}, `check "service:web": script checks are disabled on this agent; start it with -enable-script-checks to run ScriptArgs, or use an HTTP, TCP or TTL check`},
		{"bad status", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{TTL: time.Second, Status: "ok"}}}, `Status for checks must 'passing', 'warning', 'critical': check "service:web" has Status "ok"`},
		{"same check ID twice", ServiceDefinition{Service: Service{Name: "web"}, Checks: []checks.Definition{{ID: "c", TTL: time.Second}, {ID: "c", TTL: time.Second}}}, `service "web": two of its checks have the ID "c"; give each check its own CheckID`},
		{"reserved meta", ServiceDefinition{Service: Service{Name: "web", Meta: map[string]string{"consul-x": "1"}}}, `Invalid meta of service "web": key "consul-x" uses the reserved prefix "consul-"`},
	}
	c := newTestCatalog(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.RegisterService(tt.def, false)
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalid) {
				t.Errorf("RegisterService = %v\nwant %q (ErrInvalid)", err, tt.want)
			}
		})
	}
	if got := c.LocalServices(); len(got) != 0 {
		t.Errorf("refused registrations left services behind: %v", got)
	}
}

func TestLocalRegistrationAndTTL(t *testing.T) {
	c := newTestCatalog(t)
	err := c.RegisterService(ServiceDefinition{
		Service: Service{Name: "web", Tags: []string{"v1"}, Port: 8080},
		Checks:  []checks.Definition{{TTL: 30 * time.Second}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := instances(c, "web"); !cmp.Equal(got, []string{"self/web/critical"}) {
		t.Fatalf("a new TTL check starts critical; instances = %v", got)
	}
	ws := memdb.NewWatchSet()
	idx, _ := c.ServiceHealth(ws, "web", Filter{Passing: true})
	if err := c.UpdateTTL("service:web", StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	if !fired(ws) {
		t.Error("passing the TTL check did not fire web's watch")
	}
	idx2, passing := c.ServiceHealth(nil, "web", Filter{Passing: true})
	if idx2 <= idx || len(passing) != 1 {
		t.Fatalf("after pass: index %d -> %d, %d passing; want a higher index and 1", idx, idx2, len(passing))
	}
	chks := passing[0].Checks
	if len(chks) != 2 || chks[0].CheckID != SerfCheckID || chks[1].Output != "ok" {
		t.Errorf("checks = %+v; want serfHealth then service:web with output ok", chks)
	}

	// Output-only changes wait; a status change carries them.
	if err := c.UpdateTTL("service:web", StatusPassing, "still ok"); err != nil {
		t.Fatal(err)
	}
	if idx3, _ := c.ServiceHealth(nil, "web", Filter{}); idx3 != idx2 {
		t.Errorf("an output-only change moved the index %d -> %d; it should wait for CheckUpdateInterval", idx2, idx3)
	}
	if got := c.LocalChecks()[0].Output; got != "still ok" {
		t.Errorf("local check output = %q, want the latest, still ok", got)
	}

	tests := []struct {
		id, status string
		want       string
	}{
		{"nope", StatusPassing, `Unknown check ID "nope". Ensure that the check ID is passed, not the check name.`},
		{"service:web", "fine", `Invalid check status: "fine"; use passing, warning or critical`},
	}
	for _, tt := range tests {
		if err := c.UpdateTTL(tt.id, tt.status, ""); err == nil || err.Error() != tt.want {
			t.Errorf("UpdateTTL(%q, %q) = %v, want %q", tt.id, tt.status, err, tt.want)
		}
	}

	// Re-registering keeps the status; deregistering removes everything.
	if err := c.RegisterService(ServiceDefinition{Service: Service{Name: "web", Port: 8080}, Checks: []checks.Definition{{TTL: 30 * time.Second}}}, false); err != nil {
		t.Fatal(err)
	}
	if got := instances(c, "web"); !cmp.Equal(got, []string{"self/web/passing"}) {
		t.Errorf("after re-registering: %v, want the check still passing", got)
	}
	if err := c.DeregisterService("web"); err != nil {
		t.Fatal(err)
	}
	if got := instances(c, "web"); got != nil {
		t.Errorf("after deregistering: %v", got)
	}
	if got := c.LocalChecks(); len(got) != 0 {
		t.Errorf("the service's checks are left: %v", got)
	}
}

// TestPersistence: services and checks come back after a restart, and the
// version only grows.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *Config) { c.DataDir = dir }
	c := newTestCatalog(t, withDir)
	v1 := c.Version()
	for _, name := range []string{"web", "db", "cache"} {
		if err := c.RegisterService(ServiceDefinition{Service: Service{Name: name, Port: 80}, Checks: []checks.Definition{{TTL: time.Minute}}}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeregisterService("cache"); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterCheck(checks.Definition{Name: "disk", TCP: "127.0.0.1:1", Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(Registration{Node: Node{Node: "google", Address: "8.8.8.8"}, Service: &Service{Name: "search", Port: 443}}); err != nil {
		t.Fatal(err)
	}
	v2 := c.Version()

	c2 := newTestCatalog(t, withDir)
	var got []string
	for _, s := range c2.LocalServices() {
		got = append(got, s.ID)
	}
	if want := []string{"db", "web"}; !cmp.Equal(got, want) {
		t.Errorf("services after restart = %v, want %v", got, want)
	}
	var gotChecks []string
	for _, d := range c2.LocalCheckDefinitions() {
		gotChecks = append(gotChecks, d.ID+"/"+d.Type())
	}
	if want := []string{"disk/tcp", "service:db/ttl", "service:web/ttl"}; !cmp.Equal(gotChecks, want) {
		t.Errorf("checks after restart = %v, want %v", gotChecks, want)
	}
	if got := instances(c2, "search"); !cmp.Equal(got, []string{"google/search/passing"}) {
		t.Errorf("external registration after restart = %v", got)
	}
	if v3 := c2.Version(); v3 <= v2 || v2 <= v1 {
		t.Errorf("versions %d, %d, then %d after restart: want them to grow", v1, v2, v3)
	}
}

// TestReservedVersionSurvivesClockGoingBack: a restart never reuses a
// version, even when the clock says it is earlier than the last boot.
func TestReservedVersionSurvivesClockGoingBack(t *testing.T) {
	dir := t.TempDir()
	s := &store{dir: dir}
	future := uint64(time.Now().Add(time.Hour).UnixMilli()) << 20
	if err := s.saveReserved(future); err != nil {
		t.Fatal(err)
	}
	c := newTestCatalog(t, func(c *Config) { c.DataDir = dir })
	if v := c.Version(); v <= future {
		t.Errorf("version after boot = %d, want above the reserved %d", v, future)
	}
}

func TestRunSpreadsAndAppliesOverGossip(t *testing.T) {
	fm := newFakeMembers("self", MemberAlive, "a", MemberAlive)
	c := newTestCatalog(t, func(c *Config) { c.Members = fm; c.Fast = true })
	g := newFakeGossip()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx, g, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	// Our state goes out at start and after a change.
	g.waitFor(t, "the state at start", func(msgs [][]byte) bool { return len(msgs) >= 1 })
	if err := c.RegisterService(ServiceDefinition{Service: Service{Name: "web"}}, false); err != nil {
		t.Fatal(err)
	}
	g.waitFor(t, "a state with web", func(msgs [][]byte) bool {
		nodes, _ := decodeMsg(msgs[len(msgs)-1])
		return len(nodes) == 1 && len(nodes[0].Services) == 1
	})

	// Another agent's state arrives; a failure marks it critical.
	ws := memdb.NewWatchSet()
	c.ServiceHealth(ws, "db", Filter{})
	c.GossipHandler().NotifyMsg(append([]byte{msgRecord}, record("a", 1, remoteState("a", "db"))...))
	ctxw, cancelw := context.WithTimeout(ctx, 10*time.Second)
	defer cancelw()
	if err := ws.WatchCtx(ctxw); err != nil {
		t.Fatalf("db never appeared: %v", err)
	}
	if got := instances(c, "db"); !cmp.Equal(got, []string{"a/db/passing"}) {
		t.Errorf("db = %v", got)
	}
	ws = memdb.NewWatchSet()
	c.ServiceHealth(ws, "db", Filter{})
	fm.set("a", MemberFailed)
	if err := ws.WatchCtx(ctxw); err != nil {
		t.Fatalf("a's failure did not change db: %v", err)
	}
	if got := instances(c, "db"); !cmp.Equal(got, []string{"a/db/critical"}) {
		t.Errorf("db after a failed = %v", got)
	}
}

func decodeMsg(msg []byte) ([]nodeState, error) {
	_, _, body, err := recordHeader(msg[1:])
	if err != nil {
		return nil, err
	}
	return decodeBody(body)
}

// fakeGossip records what the catalog sends.
type fakeGossip struct {
	mu      sync.Mutex
	msgs    [][]byte
	changed chan struct{}
}

func newFakeGossip() *fakeGossip { return &fakeGossip{changed: make(chan struct{})} }

func (g *fakeGossip) Broadcast(key string, msg []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.msgs = append(g.msgs, append([]byte(nil), msg...))
	close(g.changed)
	g.changed = make(chan struct{})
	return nil
}

func (g *fakeGossip) SendReliable(node string, msg []byte) error   { return g.Broadcast(node, msg) }
func (g *fakeGossip) SendBestEffort(node string, msg []byte) error { return g.Broadcast(node, msg) }
func (g *fakeGossip) MaxBroadcastSize() int                        { return 1200 }

func (g *fakeGossip) waitFor(t *testing.T, what string, cond func([][]byte) bool) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		g.mu.Lock()
		ok := len(g.msgs) > 0 && cond(g.msgs)
		ch := g.changed
		g.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("gossip: %s not sent within 10s", what)
		}
	}
}

func TestAllInstances(t *testing.T) {
	c := newTestCatalog(t)
	members := newFakeMembers("a", MemberAlive, "b", MemberFailed).snapshot()
	c.receive(inMsg{buf: record("a", 1, remoteState("a", "web", "db"))}, members, nil)
	c.receive(inMsg{buf: record("b", 1, remoteState("b", "web"))}, members, nil)
	ws := memdb.NewWatchSet()
	idx, all := c.AllInstances(ws)
	var got []string
	for _, in := range all {
		got = append(got, fmt.Sprintf("%s/%s/%d checks/%s", in.Service.Name, in.Node.Node, len(in.Checks), in.Checks[0].Status))
	}
	want := []string{"db/a/1 checks/passing", "web/a/1 checks/passing", "web/b/1 checks/critical"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AllInstances (-want +got):\n%s", diff)
	}
	members["b"] = MemberAlive
	c.reconcile("b", members, nil)
	if !fired(ws) {
		t.Error("a change of health did not fire AllInstances' watch")
	}
	if idx2, _ := c.AllInstances(nil); idx2 <= idx {
		t.Errorf("index %d -> %d after a change", idx, idx2)
	}
}
