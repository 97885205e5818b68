package membership

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
)

// Network coordinates (Vivaldi, serf's coordinate package), as Consul
// computes them: every probe memberlist sends is answered with the
// probed member's coordinate in the ack, and the prober feeds the measured round-trip time and that coordinate to its
// own Vivaldi client. memberlist probes every member in turn, so each
// agent learns every member's latest coordinate directly from the acks:
// no agent needs a server to answer /v1/coordinate/nodes (Consul stores
// them in the servers' catalog instead).

// coordinates holds this agent's Vivaldi client and the last coordinate
// each other member sent.
type coordinates struct {
	client *coordinate.Client

	mu     sync.Mutex
	index  uint64
	watch  chan struct{}
	others map[string]*coordinate.Coordinate
}

func newCoordinates() (*coordinates, error) {
	client, err := coordinate.NewClient(coordinate.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("network coordinates: %w", err)
	}
	return &coordinates{client: client, watch: make(chan struct{}), others: make(map[string]*coordinate.Coordinate)}, nil
}

// set records node's coordinate and wakes watchers.
func (c *coordinates) set(node string, coord *coordinate.Coordinate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.others[node] = coord
	c.index++
	close(c.watch)
	c.watch = make(chan struct{})
}

// pingDelegate is memberlist's PingDelegate: it puts this agent's
// coordinate in its acks and learns from the others'. memberlist calls it
// from its probe goroutines; it only updates the coordinates.
type pingDelegate struct{ m *Membership }

var _ memberlist.PingDelegate = pingDelegate{}

// AckPayload implements memberlist.PingDelegate.
func (d pingDelegate) AckPayload() []byte {
	b, err := json.Marshal(d.m.coords.client.GetCoordinate())
	if err != nil {
		return nil
	}
	return b
}

// NotifyPingComplete implements memberlist.PingDelegate.
func (d pingDelegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	if len(payload) == 0 {
		return // an agent that sends none, or an indirect probe
	}
	var coord coordinate.Coordinate
	if err := json.Unmarshal(payload, &coord); err != nil || !coord.IsValid() {
		d.m.log.Debug("ignoring an unreadable network coordinate", "node", other.Name, "error", err)
		return
	}
	c := d.m.coords
	if _, err := c.client.Update(other.Name, &coord, rtt); err != nil {
		d.m.log.Debug("network coordinate update rejected", "node", other.Name, "rtt", rtt, "error", err)
		return
	}
	c.set(other.Name, &coord)
}

// NodeCoordinate is one member's network coordinate.
type NodeCoordinate struct {
	Node  string
	Coord *coordinate.Coordinate
}

// Coordinate is this agent's own network coordinate.
func (m *Membership) Coordinate() *coordinate.Coordinate {
	return m.coords.client.GetCoordinate()
}

// Coordinates returns the coordinates of the current members (failed
// ones included until reaped), this agent's own among them, sorted by
// node name; members not yet probed have none and are not listed. The
// index grows with every change; ws (if not nil) gets a channel that
// closes on the next one.
func (m *Membership) Coordinates(ws memdb.WatchSet) (uint64, []NodeCoordinate) {
	_, members := m.table.list(nil)
	c := m.coords
	c.mu.Lock()
	defer c.mu.Unlock()
	if ws != nil {
		ws.Add(c.watch)
	}
	out := make([]NodeCoordinate, 0, len(members))
	known := make(map[string]bool, len(members))
	for _, mem := range members {
		known[mem.Name] = true
	}
	for node := range c.others {
		if !known[node] {
			// Reaped: forget it, so that a cluster whose nodes come and
			// go does not keep every name it ever saw.
			delete(c.others, node)
			c.client.ForgetNode(node)
		}
	}
	for _, mem := range members {
		if mem.Name == m.cfg.NodeName {
			out = append(out, NodeCoordinate{Node: mem.Name, Coord: c.client.GetCoordinate()})
			continue
		}
		if coord, ok := c.others[mem.Name]; ok {
			out = append(out, NodeCoordinate{Node: mem.Name, Coord: coord.Clone()})
		}
	}
	return c.index + 1, out
}

// SetCoordinate records a coordinate for node, as PUT
// /v1/coordinate/update does in Consul. This agent's own coordinate
// becomes coord (its Vivaldi client goes on from there); another
// member's is kept until the next probe of that member replaces it.
func (m *Membership) SetCoordinate(node string, coord *coordinate.Coordinate) error {
	if coord == nil || !coord.IsValid() {
		return fmt.Errorf("set coordinate of %q: the coordinate is missing or has non-finite components", node)
	}
	c := m.coords
	if !coord.IsCompatibleWith(c.client.GetCoordinate()) {
		return fmt.Errorf("set coordinate of %q: it has %d dimensions, this agent's have %d", node, len(coord.Vec), len(c.client.GetCoordinate().Vec))
	}
	if node == m.cfg.NodeName {
		if err := c.client.SetCoordinate(coord); err != nil {
			return fmt.Errorf("set coordinate of %q: %w", node, err)
		}
		c.set(node, coord) // wakes watchers; the own entry is read from the client
		return nil
	}
	c.set(node, coord.Clone())
	return nil
}

// SortByDistance orders items by the estimated round trip time from the
// node named from to each item's node, by coords: nearest first, items
// whose node has no coordinate last, in their order. It leaves items as
// they are when from has no coordinate. This is Consul's ?near= order.
func SortByDistance[T any](coords []NodeCoordinate, from string, items []T, node func(T) string) {
	byNode := make(map[string]*coordinate.Coordinate, len(coords))
	for _, nc := range coords {
		byNode[nc.Node] = nc.Coord
	}
	origin, ok := byNode[from]
	if !ok {
		return
	}
	const unknown = time.Duration(1<<63 - 1)
	dist := make(map[string]time.Duration, len(coords))
	for n, c := range byNode {
		if c.IsCompatibleWith(origin) {
			dist[n] = origin.DistanceTo(c)
		}
	}
	of := func(t T) time.Duration {
		if d, ok := dist[node(t)]; ok {
			return d
		}
		return unknown
	}
	slices.SortStableFunc(items, func(a, b T) int { return cmp.Compare(of(a), of(b)) })
}
