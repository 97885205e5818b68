package httpapi

import "time"

// Connect's CA roots: /v1/agent/connect/ca/roots and /v1/connect/ca/roots.
// cairn runs no service mesh: it signs no leaf certificates and starts no
// proxies. With connect { enabled = true } the agent still has a root of
// its own (made at start), so that tools which wait for Connect to be
// bootstrapped (consul/sdk's testutil, some schedulers) start; without
// it the endpoint answers Consul's "Connect must be enabled" error.

// CARoot is one Connect CA root certificate (api.CARoot).
type CARoot struct {
	ID             string
	Name           string
	SerialNumber   uint64
	SigningKeyID   string
	NotBefore      time.Time
	NotAfter       time.Time
	RootCertPEM    string `json:"RootCert"`
	Active         bool
	PrivateKeyType string
	PrivateKeyBits int
	CreateIndex    uint64
	ModifyIndex    uint64
}

// caRootList is api.CARootList.
type caRootList struct {
	ActiveRootID string
	TrustDomain  string
	Roots        []CARoot
}

// connectCARoots serves GET /v1/agent/connect/ca/roots and
// /v1/connect/ca/roots.
func (h *handler) connectCARoots(c *call) error {
	r := h.connectRoot
	if r == nil {
		// Consul's answer when Connect is off.
		return badRequest("Connect must be enabled in order to use this endpoint")
	}
	out := caRootList{ActiveRootID: r.ID, TrustDomain: h.trustDomain, Roots: []CARoot{*r}}
	c.w.Header().Set("X-Consul-Index", "1")
	return writeJSON(c.w, 200, out)
}
