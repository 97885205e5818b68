package httpapi

import (
	"github.com/cairn-dev/cairn/agent/acl"
	"net/http"
	"slices"

	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/blocking"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/serf/coordinate"
)

// Coordinates is what the HTTP API needs for Consul's network
// coordinates (/v1/coordinate/*, ?near=): a *membership.Membership, whose
// members measure them from gossip probe round trips. Called from
// request goroutines, concurrently; never blocks.
type Coordinates interface {
	// Coordinates is every member's latest coordinate, with an index
	// and a watch channel added to ws.
	Coordinates(ws memdb.WatchSet) (uint64, []membership.NodeCoordinate)
	// SetCoordinate records a node's coordinate (PUT /v1/coordinate/update).
	SetCoordinate(node string, c *coordinate.Coordinate) error
}

var errNoCoordinates = &httpError{code: http.StatusInternalServerError, msg: "this agent has no network coordinates"}

// coordinateEntry is Consul's api.CoordinateEntry.
type coordinateEntry struct {
	Node    string
	Segment string
	Coord   *coordinate.Coordinate
}

// coordinateDatacenterMap is Consul's api.CoordinateDatacenterMap.
type coordinateDatacenterMap struct {
	Datacenter  string
	AreaID      string
	Coordinates []coordinateEntry
}

// coordinateDatacenters serves GET /v1/coordinate/datacenters. Consul
// answers the servers' WAN coordinates of every datacenter; cairn has one
// datacenter and no WAN pool, so it answers that datacenter's servers
// with their LAN coordinates (what `consul rtt -wan` between them would
// measure), in Consul's "wan" area.
func (h *handler) coordinateDatacenters(c *call) error {
	if h.coordinates == nil {
		return errNoCoordinates
	}
	servers := map[string]bool{}
	if h.cluster != nil {
		for _, m := range h.cluster.Members() {
			if m.Server && m.Status == MemberAlive {
				servers[m.Name] = true
			}
		}
	}
	dc := coordinateDatacenterMap{Datacenter: h.self.Datacenter, AreaID: "wan", Coordinates: []coordinateEntry{}}
	_, all := h.coordinates.Coordinates(nil)
	for _, nc := range all {
		if servers[nc.Node] {
			dc.Coordinates = append(dc.Coordinates, coordinateEntry{Node: nc.Node + "." + h.self.Datacenter, Coord: nc.Coord})
		}
	}
	return writeJSON(c.w, http.StatusOK, []coordinateDatacenterMap{dc})
}

// readCoordinates answers the node coordinate reads as blocking queries.
func (h *handler) readCoordinates(c *call, keep func(node string) bool) ([]coordinateEntry, error) {
	if h.coordinates == nil {
		return nil, errNoCoordinates
	}
	o, err := readOptions(c.query)
	if err != nil {
		return nil, err
	}
	if err := parseQueryFilter(c); err != nil {
		return nil, err
	}
	var out []coordinateEntry
	idx, err := blocking.Run(c.ctx, blocking.Query{MinIndex: o.MinIndex, Wait: o.MaxWait}, func(ws memdb.WatchSet) (uint64, error) {
		idx, all := h.coordinates.Coordinates(ws)
		out = []coordinateEntry{}
		for _, nc := range all {
			if keep(nc.Node) {
				out = append(out, coordinateEntry{Node: nc.Node, Coord: nc.Coord})
			}
		}
		return idx, nil
	})
	if err != nil {
		return nil, err
	}
	// Consul's filterCoordinates: node read on each.
	out = filterList(c, out, func(e coordinateEntry) bool { return c.can(acl.Node, e.Node, acl.Read) })
	setMeta(c.w, kv.QueryMeta{Index: idx, KnownLeader: true}, o)
	return out, nil
}

// coordinateNodes serves GET /v1/coordinate/nodes: every node's
// coordinate (nodes not yet measured are left out, as in Consul).
func (h *handler) coordinateNodes(c *call) error {
	out, err := h.readCoordinates(c, func(string) bool { return true })
	if err != nil {
		return err
	}
	return writeFiltered(c, out)
}

// coordinateNode serves GET /v1/coordinate/node/<node>: a list of the
// node's coordinates (one per network segment: one here), 404 when the
// node has none.
func (h *handler) coordinateNode(c *call) error {
	if c.arg == "" {
		return badRequest("Missing node name: use /v1/coordinate/node/<node>")
	}
	out, err := h.readCoordinates(c, func(n string) bool { return n == c.arg })
	if err != nil {
		return err
	}
	if len(out) == 0 {
		c.w.WriteHeader(http.StatusNotFound)
		return nil
	}
	return writeFiltered(c, out)
}

// coordinateUpdate serves PUT /v1/coordinate/update with Consul's body
// (structs.CoordinateUpdateRequest: Node, Segment, Coord).
func (h *handler) coordinateUpdate(c *call) error {
	if h.coordinates == nil {
		return errNoCoordinates
	}
	var in struct {
		Node    string
		Segment string
		Coord   *coordinate.Coordinate
	}
	if err := decodeJSONBody(c, &in, "a coordinate update"); err != nil {
		return err
	}
	if in.Node == "" {
		return badRequest("Missing node name: give the body's Node")
	}
	if in.Coord == nil {
		return badRequest("Missing coordinate: give the body's Coord (Vec, Error, Adjustment, Height)")
	}
	// Consul's Coordinate.Update: node write on the node.
	if err := c.allow(acl.Node, in.Node, acl.Write); err != nil {
		return err
	}
	if h.cluster != nil && !slices.ContainsFunc(h.cluster.Members(), func(m Member) bool { return m.Name == in.Node }) {
		return badRequest("Unknown node %q: a coordinate is kept only for a member of the cluster (see /v1/agent/members)", in.Node)
	}
	if err := h.coordinates.SetCoordinate(in.Node, in.Coord); err != nil {
		return badRequest("%v", err)
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// nearNode resolves ?near=: "_agent" is this agent's node; "" means no
// sorting.
func (h *handler) nearNode(c *call) string {
	near := c.query.Get("near")
	if near == "_agent" {
		return h.self.NodeName
	}
	return near
}

// sortNear orders out by the estimated round trip time from the ?near=
// node to each element's node, nearest first, as Consul's ?near= does.
// Elements whose node has no coordinate go last, in their order; when
// the near node itself has none (or ?near is absent) out is left as it
// is.
func sortNear[T any](h *handler, c *call, out []T, node func(T) string) {
	near := h.nearNode(c)
	if near == "" || h.coordinates == nil {
		return
	}
	_, coords := h.coordinates.Coordinates(nil)
	membership.SortByDistance(coords, near, out, node)
}
