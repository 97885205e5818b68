package httpapi

import "net/http"

// statusLeader serves GET /v1/status/leader: the leader's server RPC
// address as a JSON string, "" when there is none (as Consul).
func (h *handler) statusLeader(c *call) error {
	return writeJSON(c.w, http.StatusOK, h.store.Leader())
}

// statusPeers serves GET /v1/status/peers: the voting servers' addresses.
func (h *handler) statusPeers(c *call) error {
	peers, err := h.store.Peers()
	if err != nil {
		return err
	}
	if peers == nil {
		peers = []string{}
	}
	return writeJSON(c.w, http.StatusOK, peers)
}
