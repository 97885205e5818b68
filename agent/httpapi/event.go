package httpapi

import (
	"context"
	"errors"
	"github.com/cairn-dev/cairn/agent/acl"
	"net/http"
	"strconv"

	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/blocking"
	"github.com/hashicorp/go-memdb"
)

// Events is what the HTTP API needs for Consul's user events
// (/v1/event/fire, /v1/event/list): a *membership.Events. Called from
// request goroutines, concurrently; neither method blocks.
type Events interface {
	// Fire sends ev to every agent and returns it with its ID and
	// Lamport time; membership.ErrBadEvent says ev is invalid.
	Fire(ev membership.UserEvent) (membership.UserEvent, error)
	// List is the events this agent kept, oldest first; ws gets a
	// channel that closes when another is kept.
	List(ws memdb.WatchSet) []membership.UserEvent
}

var errNoEvents = &httpError{code: http.StatusInternalServerError, msg: "this agent has no user events"}

// userEventOut is Consul's api.UserEvent; Payload is []byte, so it is
// base64 in JSON, and null when the event has none.
type userEventOut struct {
	ID            string
	Name          string
	Payload       []byte
	NodeFilter    string
	ServiceFilter string
	TagFilter     string
	Version       int
	LTime         uint64
}

func toUserEventOut(ev membership.UserEvent) userEventOut {
	return userEventOut(ev)
}

// eventFire serves PUT /v1/event/fire/<name>: the body is the payload;
// ?node=, ?service= and ?tag= are regular expressions that the receiving
// agents judge against their node name and local services. The answer is
// the event as sent (Consul's shape).
func (h *handler) eventFire(c *call) error {
	if h.events == nil {
		return errNoEvents
	}
	if c.arg == "" {
		return badRequest("Missing name: give the event's name in the path, e.g. /v1/event/fire/deploy")
	}
	// Consul's EventFire: event write on the name.
	if err := c.allow(acl.Event, c.arg, acl.Write); err != nil {
		return err
	}
	payload, err := readBody(c, maxBodySize, "a user event's payload")
	if err != nil {
		return err
	}
	ev := membership.UserEvent{
		Name:          c.arg,
		NodeFilter:    c.query.Get("node"),
		ServiceFilter: c.query.Get("service"),
		TagFilter:     c.query.Get("tag"),
	}
	if len(payload) > 0 {
		ev.Payload = payload
	}
	sent, err := h.events.Fire(ev)
	if errors.Is(err, membership.ErrBadEvent) {
		return badRequest("%v", err)
	}
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, toUserEventOut(sent))
}

// eventList serves GET /v1/event/list: the events this agent kept, oldest
// first, only those named ?name= when given. As in Consul, the index is
// derived from the last event's ID (eventIndex), so it is not monotonic:
// a blocking query (?index=) waits while the index equals the one given,
// and answers as soon as it differs.
func (h *handler) eventList(c *call) error {
	if h.events == nil {
		return errNoEvents
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	name := c.query.Get("name")
	var out []userEventOut
	var idx uint64
	var filtered bool
	read := func(ws memdb.WatchSet) {
		out = []userEventOut{}
		filtered = false
		for _, ev := range h.events.List(ws) {
			if name == "" || ev.Name == name {
				// Consul's UserEvents: event read on each name.
				if !c.aclOff() && !c.can(acl.Event, ev.Name, acl.Read) {
					filtered = true
					continue
				}
				out = append(out, toUserEventOut(ev))
			}
		}
		idx = 1 // Consul's answer for no events: never 0, which would spin clients
		if len(out) > 0 {
			idx = eventIndex(out[len(out)-1].ID)
		}
	}
	ws := memdb.NewWatchSet()
	read(ws)
	if o.MinIndex > 0 && idx == o.MinIndex {
		wctx, cancel := context.WithTimeout(c.ctx, blocking.Wait(o.MaxWait))
		defer cancel()
		for idx == o.MinIndex {
			if err := ws.WatchCtx(wctx); err != nil {
				if c.ctx.Err() != nil {
					return c.ctx.Err()
				}
				break // the wait ran out: answer what there is
			}
			ws = memdb.NewWatchSet()
			read(ws)
		}
	}
	c.w.Header()[hdrIndex] = []string{strconv.FormatUint(idx, 10)}
	if filtered {
		c.markFiltered()
	}
	return writeFiltered(c, out)
}

// eventIndex is Consul's uuidToUint64 (and api.Event.IDToIndex): the
// first 64 bits of the ID XOR the last 64. An ID that is not a UUID
// gives 1.
func eventIndex(id string) uint64 {
	if len(id) != 36 {
		return 1
	}
	lower, err1 := strconv.ParseUint(id[0:8]+id[9:13]+id[14:18], 16, 64)
	upper, err2 := strconv.ParseUint(id[19:23]+id[24:36], 16, 64)
	if err1 != nil || err2 != nil {
		return 1
	}
	return max(lower^upper, 1)
}
