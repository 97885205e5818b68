package kv

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is one server of the Raft configuration.
type Peer struct {
	ID      string
	Address string
	Voter   bool
	Leader  bool
}

// HasState reports whether this server already belongs to a Raft
// configuration (from its own log, a snapshot or a bootstrap).
func (s *Server) HasState() bool {
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// BootstrapCluster forms a new cluster of exactly these servers. Every
// server that sees the same -bootstrap-expect set calls it with the same
// list, which raft accepts as one cluster; a server that already has
// state refuses, so two clusters never form by accident.
func (s *Server) BootstrapCluster(peers []Peer) error {
	if s.HasState() {
		return fmt.Errorf("kv: this server already has Raft state; not bootstrapping again")
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	var cfg raft.Configuration
	for _, p := range peers {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
	}
	if err := s.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("kv: bootstrap %d servers: %w", len(peers), err)
	}
	return nil
}

// Configuration lists the servers of the Raft configuration.
func (s *Server) Configuration() ([]Peer, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	leader := s.Leader()
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{
			ID:      string(srv.ID),
			Address: string(srv.Address),
			Voter:   srv.Suffrage == raft.Voter,
			Leader:  string(srv.Address) == leader && leader != "",
		})
	}
	return out, nil
}

// AddVoter adds (or re-addresses) a server as a voter. Leader only.
func (s *Server) AddVoter(id, addr string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// RemoveServer removes a server from the configuration. Leader only.
func (s *Server) RemoveServer(id string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	return s.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}
