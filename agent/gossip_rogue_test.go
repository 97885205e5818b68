package agent

import (
	"bytes"
	"compress/flate"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/memberlist"
	mdns "github.com/miekg/dns"
)

// The rogue gossip member of issue 15: a process that runs memberlist,
// joins a cluster started without -encrypt, and speaks the catalog's wire
// format (written out here byte by byte, as an attacker would) to claim
// another agent's services. It never gets to change them.

// rogueRecord is a catalog record in origin's name: the unsigned form
// (type 1) every agent took before records were signed, or, with key, the
// signed form (type 2) signed by a key that is not origin's.
func rogueRecord(origin string, version uint64, node, addr string, key ed25519.PrivateKey) []byte {
	body := map[string]any{"Nodes": []any{map[string]any{
		"Node": map[string]any{"Node": node, "Address": addr, "Datacenter": "dc1"},
		"Services": []any{map[string]any{
			"ID": "web", "Name": "web", "Address": addr, "Port": 80,
			"Weights": map[string]int{"Passing": 1, "Warning": 1},
		}},
	}}}
	js, _ := json.Marshal(body)
	rec := binary.AppendUvarint(nil, uint64(len(origin)))
	rec = append(rec, origin...)
	rec = binary.AppendUvarint(rec, version)
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestSpeed)
	zw.Write(js)
	zw.Close()
	rec = append(rec, z.Bytes()...)
	if key != nil {
		rec = append(rec, ed25519.Sign(key, rec)...)
	}
	return rec
}

// catalogKind is the gossip kind of the catalog (gossipKindCatalog).
const rogueCatalogKind = 32

// rogueMsg frames a record as a catalog gossip message.
func rogueMsg(rec []byte, signed bool) []byte {
	typ := byte(1)
	if signed {
		typ = 2
	}
	return append([]byte{rogueCatalogKind, typ}, rec...)
}

// roguePushPull frames records as membership's push/pull state.
func roguePushPull(recs [][]byte, signed bool) []byte {
	format := byte(1)
	if signed {
		format = 2
	}
	part := []byte{format}
	for _, r := range recs {
		part = binary.AppendUvarint(part, uint64(len(r)))
		part = append(part, r...)
	}
	out := []byte{1, rogueCatalogKind}
	out = binary.AppendUvarint(out, uint64(len(part)))
	return append(out, part...)
}

// rogue is the attacker's memberlist delegate: it offers forged records
// in every push/pull and gossips them.
type rogue struct {
	mu     sync.Mutex
	state  []byte
	gossip [][]byte
}

func (r *rogue) NodeMeta(int) []byte { return nil }
func (r *rogue) NotifyMsg([]byte)    {}
func (r *rogue) GetBroadcasts(overhead, limit int) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	size := 0
	for _, m := range r.gossip {
		if size+len(m)+overhead > limit {
			break
		}
		out = append(out, m)
		size += len(m) + overhead
	}
	return out
}
func (r *rogue) LocalState(bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}
func (r *rogue) MergeRemoteState([]byte, bool) {}

func (r *rogue) set(state []byte, gossip [][]byte) {
	r.mu.Lock()
	r.state, r.gossip = state, gossip
	r.mu.Unlock()
}

// webAnswers is where an agent's catalog, health endpoint and DNS say
// web is, and the tags of its instances.
func webAnswers(t *testing.T, a *running) (addrs []string, tags string) {
	t.Helper()
	ss, _, err := a.client.Catalog().Service("web", "", nil)
	if err != nil {
		t.Fatalf("catalog/service/web: %v", err)
	}
	for _, s := range ss {
		addrs = append(addrs, "catalog "+s.Node+" "+s.ServiceAddress)
		tags += strings.Join(s.ServiceTags, ",")
	}
	n, _, err := a.client.Catalog().Node("c0", nil)
	if err != nil {
		t.Fatalf("catalog/node/c0: %v", err)
	}
	if n != nil && n.Node != nil {
		addrs = append(addrs, "node c0 "+n.Node.Address)
	}
	r, err := dnsQuery(a.DNSAddr().String(), "web.service.consul", mdns.TypeA)
	if err != nil {
		t.Fatalf("DNS web.service.consul: %v", err)
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			addrs = append(addrs, "dns "+a.A.String())
		}
	}
	slices.Sort(addrs)
	return addrs, tags
}

// TestRogueGossipMemberCannotClaimServices is issue 15's attack: without
// -encrypt, a memberlist process joins and sends catalog records in c0's
// name, directly, by gossip (relayed) and in push/pull, unsigned and
// signed with its own key, at the next version and at a huge one. The
// server's catalog, health and DNS answers stay c0's, and c0's later
// re-registrations are answered.
func TestRogueGossipMemberCannotClaimServices(t *testing.T) {
	s0cfg := clusterConfig(t, "s0", true, 1)
	s0cfg.Ports.DNS = 0
	s0 := startAgent(t, s0cfg)
	waitLeader(t, s0.client)
	c0 := startAgent(t, clusterConfig(t, "c0", false, 0, s0.SerfAddr()))
	waitLeader(t, c0.client)

	register := func(tag string) {
		t.Helper()
		err := c0.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "web", Name: "web", Address: "127.0.0.10", Port: 80, Tags: []string{tag},
		})
		if err != nil {
			t.Fatalf("register web on c0: %v", err)
		}
	}
	want := []string{"catalog c0 127.0.0.10", "dns 127.0.0.10", "node c0 127.0.0.1"}
	waitTag := func(tag string) {
		t.Helper()
		eventually(t, "s0 answers c0's web tagged "+tag, 10*time.Second, func() (bool, string) {
			addrs, tags := webAnswers(t, s0)
			return tags == tag && slices.Equal(addrs, want), fmt.Sprintf("%v tags %q", addrs, tags)
		})
	}
	register("v1")
	waitTag("v1")

	// The attacker: no -encrypt, so memberlist lets it in.
	cfg := memberlist.DefaultLocalConfig()
	cfg.Name = "rogue"
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.AdvertisePort = 0
	cfg.PushPullInterval = 50 * time.Millisecond
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.Logger = log.New(io.Discard, "", 0)
	d := &rogue{}
	cfg.Delegate = d
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	forge := func(version uint64) (recs, signed [][]byte) {
		for _, v := range []uint64{version, 1 << 62, 1<<64 - 1} {
			recs = append(recs,
				rogueRecord("c0", v, "c0", "127.66.0.1", nil),
				rogueRecord("rogue", v, "c0", "127.66.0.2", nil))
			signed = append(signed,
				rogueRecord("c0", v, "c0", "127.66.0.3", key),
				rogueRecord("rogue", v, "c0", "127.66.0.4", key))
		}
		return recs, signed
	}
	targets := map[string]string{"s0": s0.SerfAddr(), "c0": c0.SerfAddr()}
	attack := func(ml *memberlist.Memberlist) {
		t.Helper()
		// c0's own next version: what an attacker that watched the
		// wire would use.
		recs, signed := forge(uint64(time.Now().Add(time.Second).UnixMilli()) << 20)
		var gossip [][]byte
		for _, r := range recs {
			gossip = append(gossip, rogueMsg(r, false))
		}
		for _, r := range signed {
			gossip = append(gossip, rogueMsg(r, true))
		}
		state := roguePushPull(recs, false)
		state = append(state, roguePushPull(signed, true)[1:]...)
		d.set(state, gossip)
		if ml == nil {
			return
		}
		// To every agent, at addresses it knows (memberlist's Members
		// are pointers its goroutines keep rewriting).
		for name, addr := range targets {
			ap := netip.MustParseAddrPort(addr)
			to := &memberlist.Node{Name: name, Addr: net.IP(ap.Addr().AsSlice()), Port: ap.Port()}
			for _, g := range gossip {
				if err := ml.SendReliable(to, g); err != nil {
					t.Logf("rogue send to %s: %v", name, err)
				}
			}
		}
	}
	attack(nil) // its join's push/pull carries the forged state
	ml, err := memberlist.Create(cfg)
	if err != nil {
		t.Fatalf("rogue memberlist: %v", err)
	}
	defer ml.Shutdown()
	if _, err := ml.Join([]string{s0.SerfAddr()}); err != nil {
		t.Fatalf("rogue join: %v", err)
	}
	attack(ml)

	// The owner re-registers: answered, with its own address.
	register("v2")
	waitTag("v2")
	attack(ml)
	register("v3")
	waitTag("v3")
	// The rogue is a member (membership is not what is defended here)
	// but none of what it sent is in the catalog.
	nodes, _, err := s0.client.Catalog().Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if strings.HasPrefix(n.Address, "127.66.") {
			t.Errorf("node %s at the rogue's address %s is in the catalog", n.Node, n.Address)
		}
	}
}

// TestSignedCatalogSurvivesRestartAndRename: an agent that restarts with
// its data dir keeps its gossip key (and its binding), and one renamed
// binds its new name to the same key: both are answered again at once.
func TestSignedCatalogSurvivesRestartAndRename(t *testing.T) {
	s0 := startAgent(t, clusterConfig(t, "s0", true, 1))
	waitLeader(t, s0.client)
	c0cfg := clusterConfig(t, "c0", false, 0, s0.SerfAddr())
	c0 := startAgent(t, c0cfg)
	check := func(a *running, node, tag string) {
		t.Helper()
		err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web", Name: "web", Port: 80, Tags: []string{tag}})
		if err != nil {
			t.Fatalf("register on %s: %v", node, err)
		}
		eventually(t, "s0 answers web on "+node+" tagged "+tag, 15*time.Second, func() (bool, string) {
			ss, _, err := s0.client.Catalog().Service("web", tag, nil)
			if err != nil {
				return false, err.Error()
			}
			var got []string
			for _, s := range ss {
				got = append(got, s.Node)
			}
			return slices.Equal(got, []string{node}), fmt.Sprint(got)
		})
	}
	check(c0, "c0", "first")
	if err := c0.stop(t); err != nil {
		t.Fatal(err)
	}
	seenGone(t, s0, "c0")
	c0 = startAgent(t, c0cfg)
	check(c0, "c0", "restarted")
	if err := c0.stop(t); err != nil {
		t.Fatal(err)
	}
	renamed := c0cfg
	renamed.NodeName = "c0-renamed"
	c0 = startAgent(t, renamed)
	check(c0, "c0-renamed", "renamed")
}
