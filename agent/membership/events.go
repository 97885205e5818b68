package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
)

// User events are Consul's (`consul event`, /v1/event/fire): a name and a
// small payload that every agent of the cluster receives, each keeping the
// most recent ones for /v1/event/list and watches. Consul sends them as
// serf user events; cairn sends them on a gossip channel: a broadcast
// (piggybacked on gossip, passed on by each agent that learns it), plus
// one UDP packet to each live member at once so that small clusters see
// them in a round trip, and the recent ones in push/pull (anti-entropy)
// for any member that missed both.

// EventBufferSize is how many events each agent keeps, oldest dropped
// first: Consul's userEventBuf (256).
const EventBufferSize = 256

// MaxEventSize bounds an event's name, payload and filters together:
// serf's default UserEventSizeLimit (512 bytes), which Consul keeps.
const MaxEventSize = 512

// eventFanout bounds the direct sends of a new event; past it the
// broadcast alone carries it.
const eventFanout = 128

// UserEvent is one user event, with Consul's fields (api.UserEvent).
type UserEvent struct {
	ID            string
	Name          string
	Payload       []byte
	NodeFilter    string
	ServiceFilter string
	TagFilter     string
	Version       int
	LTime         uint64
}

// ErrBadEvent: Fire was given an event it cannot send (no name, a filter
// that is not a regular expression, too large); the text says which.
var ErrBadEvent = errors.New("invalid user event")

// EventsConfig configures an Events.
type EventsConfig struct {
	// Accept says whether this agent keeps an event: Consul's filters
	// (node name, local service and tag, each a regular expression)
	// are judged by the agent that receives the event. Called from
	// Events.Run's goroutine. nil keeps every event.
	Accept func(UserEvent) bool
	// Logger gets a line per malformed message; nil discards.
	Logger *slog.Logger
}

// Events sends and keeps user events. Safe for concurrent use.
type Events struct {
	cfg EventsConfig
	log *slog.Logger
	ch  *Channel
	in  chan UserEvent // from the gossip handler to Run

	mu    sync.Mutex
	ltime uint64              // Lamport clock of the events seen
	minLT uint64              // events at or before this Lamport time predate the join: not kept
	ring  []UserEvent         // the kept events, oldest first, at most EventBufferSize
	seen  map[string]struct{} // IDs of events already handled
	order []string            // seen's IDs in arrival order, to bound it
	watch chan struct{}       // closed when an event is kept
}

// seenLimit bounds the remembered IDs: well past what gossip still
// carries after a push/pull interval.
const seenLimit = 4 * EventBufferSize

// NewEvents registers the user events' gossip kind and returns the
// component. Register it before joining, and run Run for events to be
// kept.
func (m *Membership) NewEvents(kind byte, cfg EventsConfig) (*Events, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Events{
		cfg:   cfg,
		log:   log,
		in:    make(chan UserEvent, EventBufferSize),
		seen:  make(map[string]struct{}),
		watch: make(chan struct{}),
	}
	ch, err := m.Register(kind, eventHandler{e})
	if err != nil {
		return nil, fmt.Errorf("user events: %w", err)
	}
	e.ch = ch
	return e, nil
}

// ValidateEvent checks what Consul checks before firing: a name, filters
// that compile, a tag filter only with a service filter, and the size.
func ValidateEvent(ev UserEvent) error {
	if ev.Name == "" {
		return fmt.Errorf("%w: the event has no name; give one, e.g. /v1/event/fire/deploy", ErrBadEvent)
	}
	for _, f := range []struct{ what, re string }{{"node", ev.NodeFilter}, {"service", ev.ServiceFilter}, {"tag", ev.TagFilter}} {
		if _, err := regexp.Compile(f.re); err != nil {
			return fmt.Errorf("%w: Invalid %s filter %q: %v", ErrBadEvent, f.what, f.re, err)
		}
	}
	if ev.TagFilter != "" && ev.ServiceFilter == "" {
		return fmt.Errorf("%w: cannot provide tag filter without service filter", ErrBadEvent)
	}
	if n := len(ev.Name) + len(ev.Payload) + len(ev.NodeFilter) + len(ev.ServiceFilter) + len(ev.TagFilter); n > MaxEventSize {
		return fmt.Errorf("%w: user event exceeds limit of %d bytes (name, payload and filters are %d bytes); send a reference to the data (a KV key, say) instead", ErrBadEvent, MaxEventSize, n)
	}
	return nil
}

// Fire gives ev an ID and a Lamport time and sends it to every agent,
// this one included (which keeps it when its filters match here, like
// any other). It returns the event as sent.
func (e *Events) Fire(ev UserEvent) (UserEvent, error) {
	if err := ValidateEvent(ev); err != nil {
		return UserEvent{}, err
	}
	ev.ID = uuid.NewString()
	ev.Version = 1
	e.mu.Lock()
	e.ltime++
	ev.LTime = e.ltime
	e.mu.Unlock()
	msg, err := json.Marshal(ev)
	if err != nil {
		return UserEvent{}, fmt.Errorf("fire event %q: %w", ev.Name, err)
	}
	if err := e.ch.Broadcast(ev.ID, msg); err != nil {
		return UserEvent{}, fmt.Errorf("fire event %q: %w", ev.Name, err)
	}
	e.sendDirect(msg)
	// This agent handles its own event at once, on the caller's
	// goroutine, like any that arrives (its filters apply here too).
	e.handle(ev)
	return ev, nil
}

// sendDirect sends msg to the live members in one packet each.
func (e *Events) sendDirect(msg []byte) {
	m := e.ch.m
	_, members := m.table.list(nil)
	sent := 0
	for _, mem := range members {
		if sent == eventFanout {
			return
		}
		if mem.Name == m.cfg.NodeName || mem.Status != StatusAlive {
			continue
		}
		if err := e.ch.SendBestEffort(mem.Name, msg); err != nil {
			e.log.Debug("user event: direct send failed; gossip still carries it", "node", mem.Name, "error", err)
		}
		sent++
	}
}

// List returns the kept events, oldest first, and adds to ws (if not
// nil) a channel that closes when another is kept.
func (e *Events) List(ws memdb.WatchSet) []UserEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ws != nil {
		ws.Add(e.watch)
	}
	out := make([]UserEvent, len(e.ring))
	copy(out, e.ring)
	return out
}

// Run handles the events that arrive until ctx is done: each new one is
// passed on (broadcast) and, when Accept says so, kept.
func (e *Events) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-e.in:
			e.handle(ev)
		}
	}
}

func (e *Events) handle(ev UserEvent) {
	e.mu.Lock()
	if _, dup := e.seen[ev.ID]; dup {
		e.mu.Unlock()
		return
	}
	e.markSeenLocked(ev.ID)
	e.ltime = max(e.ltime, ev.LTime)
	old := ev.LTime <= e.minLT
	e.mu.Unlock()
	if old {
		return // from before this agent joined (serf's eventMinTime)
	}

	// Pass it on: a broadcast reaches only a few members per round, and
	// every agent that learns it must send it further (see Broadcast).
	if msg, err := json.Marshal(ev); err == nil {
		if err := e.ch.Broadcast(ev.ID, msg); err != nil {
			e.log.Debug("user event: could not pass it on", "event", ev.Name, "error", err)
		}
	}
	if e.cfg.Accept != nil && !e.cfg.Accept(ev) {
		return
	}
	e.mu.Lock()
	if len(e.ring) == EventBufferSize {
		copy(e.ring, e.ring[1:])
		e.ring = e.ring[:EventBufferSize-1]
	}
	e.ring = append(e.ring, ev)
	close(e.watch)
	e.watch = make(chan struct{})
	e.mu.Unlock()
}

// markSeenLocked remembers id, forgetting the oldest past seenLimit.
func (e *Events) markSeenLocked(id string) {
	e.seen[id] = struct{}{}
	e.order = append(e.order, id)
	if len(e.order) > seenLimit {
		delete(e.seen, e.order[0])
		e.order = e.order[1:]
	}
}

// enqueue hands an event that arrived to Run, decoding it first; the
// bytes come from the network and are never trusted.
func (e *Events) enqueue(msg []byte) {
	var ev UserEvent
	if err := json.Unmarshal(msg, &ev); err != nil || ev.ID == "" || ev.Name == "" {
		e.log.Debug("ignoring a malformed user event message", "size", len(msg), "error", err)
		return
	}
	select {
	case e.in <- ev:
	default:
		e.log.Warn("user events arrive faster than they are handled; dropped one (push/pull may bring it again)", "event", ev.Name, "id", ev.ID)
	}
}

// pushPullEvents is how many of the newest events go in push/pull.
const pushPullEvents = 32

// eventHandler is the Events' end of the gossip channel; it only decodes
// and enqueues (see Handler).
type eventHandler struct{ e *Events }

func (h eventHandler) NotifyMsg(msg []byte) { h.e.enqueue(msg) }

// LocalState sends the newest kept events, so that a member that missed
// the broadcast gets them within a push/pull interval.
func (h eventHandler) LocalState(join bool) []byte {
	e := h.e
	e.mu.Lock()
	recent := e.ring[max(0, len(e.ring)-pushPullEvents):]
	state := eventState{LTime: e.ltime, Events: append([]UserEvent(nil), recent...)}
	e.mu.Unlock()
	b, err := json.Marshal(state)
	if err != nil {
		return nil
	}
	return b
}

// MergeRemoteState takes the other side's recent events. On a join it
// only advances the clock: like Consul (which joins with serf's
// ignoreOld), an agent that joins does not replay the cluster's past.
func (h eventHandler) MergeRemoteState(buf []byte, join bool) {
	e := h.e
	var state eventState
	if err := json.Unmarshal(buf, &state); err != nil {
		e.log.Debug("ignoring malformed user event state", "size", len(buf), "error", err)
		return
	}
	if join {
		e.mu.Lock()
		e.ltime = max(e.ltime, state.LTime)
		e.minLT = max(e.minLT, state.LTime)
		e.mu.Unlock()
		return
	}
	for _, ev := range state.Events {
		if ev.ID == "" || ev.Name == "" {
			continue
		}
		select {
		case e.in <- ev:
		default:
			return
		}
	}
}

// eventState is the Events' push/pull state.
type eventState struct {
	LTime  uint64
	Events []UserEvent
}
