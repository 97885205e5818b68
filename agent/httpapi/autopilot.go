package httpapi

import (
	"context"
	"github.com/cairn-dev/cairn/agent/acl"
	"net/http"
	"time"
)

// Autopilot is what the HTTP API needs for Consul's autopilot health
// (/v1/operator/autopilot/health), which `consul operator raft
// list-peers` reads for its Commit Index and Trails Leader By columns.
// Called from request goroutines; it may block while it asks each server
// (ctx bounds it).
type Autopilot interface {
	// ServerHealth is every Raft server's state, as each server
	// reports it (a server that cannot be asked is unhealthy).
	ServerHealth(ctx context.Context) ([]ServerHealth, error)
}

// ServerHealth is one Raft server's health (api.ServerHealth).
type ServerHealth struct {
	ID, Name, Address string
	SerfStatus        string // membership status: alive, failed, ...
	Version           string
	Leader, Voter     bool
	// Reachable is false when the server did not answer (its other
	// Raft fields are then zero).
	Reachable   bool
	LastContact time.Duration // since the leader last heard of it; 0 for the leader
	LastTerm    uint64
	LastIndex   uint64
	StableSince time.Time // since when it has been healthy
}

// Consul's autopilot defaults (autopilot.Config): a server is healthy
// when the leader heard from it within LastContactThreshold and it trails
// the leader by at most MaxTrailingLogs entries in the same term.
const (
	lastContactThreshold = 200 * time.Millisecond
	maxTrailingLogs      = 250
)

// serverHealthOut is api.ServerHealth; LastContact is a duration string
// (api.ReadableDuration).
type serverHealthOut struct {
	ID          string
	Name        string
	Address     string
	SerfStatus  string
	Version     string
	Leader      bool
	LastContact string
	LastTerm    uint64
	LastIndex   uint64
	Healthy     bool
	Voter       bool
	StableSince time.Time
}

// operatorHealthOut is api.OperatorHealthReply.
type operatorHealthOut struct {
	Healthy          bool
	FailureTolerance int
	Servers          []serverHealthOut
}

var errNoAutopilot = &httpError{code: http.StatusInternalServerError, msg: "this agent has no Raft server health"}

// healthyServer judges s against the leader's term and index, as
// Consul's autopilot does.
func healthyServer(s ServerHealth, leader *ServerHealth) bool {
	if !s.Reachable || s.SerfStatus != MemberAlive.String() {
		return false
	}
	if leader == nil {
		return false
	}
	if s.Leader {
		return true
	}
	return s.LastContact >= 0 && s.LastContact <= lastContactThreshold &&
		s.LastTerm == leader.LastTerm && s.LastIndex+maxTrailingLogs >= leader.LastIndex
}

// operatorAutopilotHealth serves GET /v1/operator/autopilot/health:
// 200 when every server is healthy, 429 otherwise (Consul's codes, which
// the client accepts both of).
func (h *handler) operatorAutopilotHealth(c *call) error {
	// Consul's Operator.ServerHealth: operator read.
	if err := c.allow(acl.Operator, "", acl.Read); err != nil {
		return err
	}
	if h.autopilot == nil {
		return errNoAutopilot
	}
	servers, err := h.autopilot.ServerHealth(c.ctx)
	if err != nil {
		return err
	}
	var leader *ServerHealth
	for i := range servers {
		if servers[i].Leader {
			leader = &servers[i]
		}
	}
	out := operatorHealthOut{Healthy: leader != nil, Servers: []serverHealthOut{}}
	healthyVoters, voters := 0, 0
	for _, s := range servers {
		ok := healthyServer(s, leader)
		out.Healthy = out.Healthy && ok
		if s.Voter {
			voters++
			if ok {
				healthyVoters++
			}
		}
		out.Servers = append(out.Servers, serverHealthOut{
			ID: s.ID, Name: s.Name, Address: s.Address, SerfStatus: s.SerfStatus, Version: s.Version,
			Leader: s.Leader, LastContact: s.LastContact.String(), LastTerm: s.LastTerm, LastIndex: s.LastIndex,
			Healthy: ok, Voter: s.Voter, StableSince: s.StableSince,
		})
	}
	out.FailureTolerance = max(healthyVoters-(voters/2+1), 0)
	code := http.StatusOK
	if !out.Healthy {
		code = http.StatusTooManyRequests
	}
	return writeJSON(c.w, code, out)
}
