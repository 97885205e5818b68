package catalog

import (
	"errors"

	"github.com/cairn-dev/cairn/agent/checks"
)

// Maintenance mode, as Consul's /v1/agent/maintenance and
// /v1/agent/service/maintenance/<id> set it: a critical check of the
// node, or of one service, that takes it out of DNS and health answers
// until maintenance ends. The check is an ordinary local check, kept and
// spread like the others, so a restart keeps the maintenance.

// Consul's maintenance check IDs and default reason.
const (
	NodeMaintenanceID        = "_node_maintenance"
	ServiceMaintenancePrefix = "_service_maintenance:"
	defaultMaintenanceReason = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	// defaultServiceMaintenanceReason is Consul's defaultServiceMaintReason.
	defaultServiceMaintenanceReason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

// SetMaintenance turns maintenance mode of this node (serviceID "") or of
// one of its services on or off; reason becomes the check's Notes.
// Turning off what is not on does nothing. An unknown service is
// ErrNotFound.
func (c *Catalog) SetMaintenance(serviceID string, enable bool, reason string) error {
	id, name := NodeMaintenanceID, "Node Maintenance Mode"
	if serviceID != "" {
		if c.LocalService(serviceID) == nil {
			return notFound("No service registered with ID %q", serviceID)
		}
		id, name = ServiceMaintenancePrefix+serviceID, "Service Maintenance Mode"
	}
	if !enable {
		err := c.DeregisterCheck(id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if reason == "" {
		reason = defaultMaintenanceReason
		if serviceID != "" {
			reason = defaultServiceMaintenanceReason
		}
	}
	d := checks.Definition{ID: id, Name: name, Notes: reason, ServiceID: serviceID, Status: checks.Critical}
	if err := c.checkCheck(&d, false); err != nil {
		return err
	}
	return c.durable(c.setMaintenance(d))
}

func (c *Catalog) setMaintenance(d checks.Definition) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.ServiceID != "" && c.services[d.ServiceID] == nil {
		return 0, notFound("No service registered with ID %q", d.ServiceID)
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.saveCheck(d); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.setCheckLocked(newLocalCheck(d, nil))
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}
