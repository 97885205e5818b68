package catalog

import (
	"github.com/cairn-dev/cairn/agent/checks"
)

// SetConditionCheck publishes a check the agent derives from its own
// condition rather than from a registration (a server's disk fault):
// status and output as given, on the node or on one of its services,
// the server's own "consul" service included. It is never written to
// the data dir: the agent derives it again when it starts, and the
// condition it reports (a full or failing disk) may be the very thing
// that keeps the catalog's log from taking writes. Setting what is
// already there does nothing.
func (c *Catalog) SetConditionCheck(d checks.Definition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.ServiceID != "" && c.services[d.ServiceID] == nil && (c.cfg.ServerService == nil || c.cfg.ServerService.ID != d.ServiceID) {
		return notFound("No service registered with ID %q", d.ServiceID)
	}
	if old := c.checks[d.ID]; old != nil {
		if !old.condition {
			return invalid("check %q is a registered check, not one the agent keeps", d.ID)
		}
		if old.status == string(d.Status) && old.output == d.Output && old.def.ServiceID == d.ServiceID {
			return nil
		}
	}
	if err := c.bumpLocked(); err != nil {
		return err
	}
	lc := newLocalCheck(d, nil)
	lc.condition = true
	c.setCheckLocked(lc)
	c.flushOutputLocked()
	c.commitLocked()
	return nil
}

// ClearConditionCheck removes a check SetConditionCheck set; removing
// one that is not there does nothing.
func (c *Catalog) ClearConditionCheck(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if lc := c.checks[id]; lc == nil || !lc.condition {
		return nil
	}
	if err := c.bumpLocked(); err != nil {
		return err
	}
	c.deleteCheckLocked(id)
	c.flushOutputLocked()
	c.commitLocked()
	return nil
}
