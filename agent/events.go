package agent

import (
	"regexp"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/membership"
)

// gossipKindEvents is the user events' gossip kind (see gossipKindCatalog).
const gossipKindEvents = membership.FirstComponentKind + 1

// eventsPart registers Consul's user events on the gossip layer (before
// any join) and returns the part that handles the events that arrive.
func (w *wiring) eventsPart() (part, error) {
	ev, err := w.ml.NewEvents(gossipKindEvents, membership.EventsConfig{
		Accept: acceptEvent(w.cfg.NodeName, w.cat.LocalServices),
		Logger: w.log,
	})
	if err != nil {
		return part{}, err
	}
	w.events = ev
	return part{"user events", ev.Run}, nil
}

// acceptEvent is Consul's shouldProcessUserEvent: an agent keeps an event
// when its node name matches the node filter and, with a service filter,
// one of its own services matches it by name or ID (and, with a tag
// filter, has a tag that matches that too). The filters were checked
// when the event was fired; one that does not compile here (from a newer
// agent, say) is not kept.
func acceptEvent(node string, services func() []*catalog.Service) func(membership.UserEvent) bool {
	return func(ev membership.UserEvent) bool {
		if ev.NodeFilter != "" {
			re, err := regexp.Compile(ev.NodeFilter)
			if err != nil || !re.MatchString(node) {
				return false
			}
		}
		if ev.ServiceFilter == "" {
			return true
		}
		svcRe, err := regexp.Compile(ev.ServiceFilter)
		if err != nil {
			return false
		}
		var tagRe *regexp.Regexp
		if ev.TagFilter != "" {
			if tagRe, err = regexp.Compile(ev.TagFilter); err != nil {
				return false
			}
		}
		for _, s := range services() {
			if !svcRe.MatchString(s.Name) && !svcRe.MatchString(s.ID) {
				continue
			}
			if tagRe == nil {
				return true
			}
			for _, t := range s.Tags {
				if tagRe.MatchString(t) {
					return true
				}
			}
		}
		return false
	}
}
