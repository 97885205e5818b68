package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/cairn-dev/cairn/agent/membership"
)

// membershipParts joins the gossip layer (memberlist) and returns its
// parts: the leave, which happens when this layer stops (after the
// catalog and its readers, before the HTTP API), and -retry-join.
func (w *wiring) membershipParts() ([]part, error) {
	cfg := w.cfg
	var key []byte
	if cfg.Encrypt != "" {
		var err error
		if key, err = membership.DecodeKey(cfg.Encrypt); err != nil {
			return nil, fmt.Errorf("-encrypt: %w", err)
		}
	}
	// The gossip identity's public key travels in the node meta (the
	// binding of a cluster without servers; gossipkeys.go).
	gkey, err := loadGossipKey(w.dataDir)
	if err != nil {
		return nil, err
	}
	role, serverAddr := membership.RoleClient, ""
	if w.mux != nil {
		role, serverAddr = membership.RoleServer, w.mux.Addr().String()
	}
	ml, err := membership.New(membership.Config{
		NodeName:        cfg.NodeName,
		BindAddr:        cfg.BindAddr,
		BindPort:        cfg.Ports.SerfLAN,
		AdvertiseAddr:   w.advertise,
		EncryptKey:      key,
		KeyringFile:     keyringFile(w.dataDir),
		Fast:            w.fast,
		ReapFailedAfter: cfg.ReconnectTimeout,
		Logger:          w.log,
		Meta: membership.Meta{
			Role:       role,
			Datacenter: cfg.Datacenter,
			RaftAddr:   serverAddr,
			NodeID:     w.nodeID,
			Proto:      membership.ProtocolVersion,
			HTTPPort:   max(w.httpPort, 0),
			DNSPort:    max(w.dnsPort, 0),
			GossipKey:  base64.StdEncoding.EncodeToString(gkey.Public().(ed25519.PublicKey)),
		},
	})
	if err != nil {
		return nil, err
	}
	w.ml = ml
	w.onClose(func() error { ml.Shutdown(); return nil })
	w.members = &memberView{ml: ml, dc: cfg.Datacenter}

	// The agent's stop, which says whether it leaves: a requested leave
	// always does, a stop when leave_on_terminate says so.
	agentStop := w.agent.stopCause
	parts := []part{{"leave", func(ctx context.Context) error {
		<-ctx.Done()
		if cfg.LeaveOnTerminate || errors.Is(agentStop(), errLeaveRequested) {
			_ = w.leave() // logged; the agent stops either way
		}
		return nil
	}}}
	if len(cfg.RetryJoin) > 0 {
		parts = append(parts, part{"retry-join", func(ctx context.Context) error {
			if err := ml.RetryJoin(ctx, cfg.RetryJoin); err != nil && ctx.Err() == nil {
				w.log.Warn("retry-join gave up", "err", err)
			}
			return nil
		}})
	}
	return parts, nil
}

// leave tells the cluster this agent is going: a leading server first
// hands the Raft group to the others by removing itself, then everyone
// sees the member "left" (not "failed"), and the leader removes a
// departed server from the Raft configuration.
func (w *wiring) leave() error {
	if w.store != nil {
		if err := w.store.Leave(); err != nil {
			w.log.Warn("leave the raft group", "err", err)
		}
	}
	err := w.ml.Leave(leaveTimeout)
	if err != nil {
		w.log.Warn("leave the cluster", "err", err)
	}
	return err
}
