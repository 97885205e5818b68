package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/snapshot"
	"github.com/cairn-dev/cairn/kv"
)

// ops is what the operator endpoints get (httpapi.Ops): the metrics
// registry, snapshots and Raft operations on servers, reload, the log
// stream and the host's description.
func (w *wiring) ops() httpapi.Ops {
	o := httpapi.Ops{
		Observer: w.tel.observer(),
		Reload:   w.agent.Reload,
		Host:     func() (any, error) { return hostInfo(w.dataDir), nil },
	}
	if w.tel != nil {
		o.Metrics = w.tel.reg.Handler()
	}
	if w.cat != nil {
		w.agent.onReload("definitions", w.definitionsReloader())
	}
	if logs := logging.Of(w.log); logs != nil {
		o.Logs = logs
	}
	if w.store != nil {
		o.Snapshots = snapshots{store: w.store}
		o.Raft = &raftOps{store: w.store}
	}
	return o
}

// snapshots implements httpapi.Snapshots on a server's store.
type snapshots struct{ store *kv.Server }

func (s snapshots) Save(ctx context.Context, w io.Writer, started func(index uint64)) error {
	meta, state, err := s.store.Snapshot()
	if err != nil {
		return err
	}
	defer state.Close()
	started(meta.Index)
	return snapshot.Write(w, snapshot.Meta{
		ID: meta.ID, Index: meta.Index, Term: meta.Term, Size: meta.Size, Version: Version, Created: time.Now().UTC(),
	}, state)
}

// Restore checks the whole archive (sums, then that the state loads)
// before the store sees it, so a bad upload changes nothing.
func (s snapshots) Restore(ctx context.Context, r io.Reader) error {
	a, err := snapshot.Read(r)
	if err != nil {
		return badSnapshot(err)
	}
	defer a.Close()
	st, err := a.State()
	if err != nil {
		return err
	}
	if _, err := kv.SummarizeState(st); err != nil {
		return badSnapshot(fmt.Errorf("%w: %v", snapshot.ErrCorrupt, err))
	}
	if st, err = a.State(); err != nil {
		return err
	}
	return s.store.Restore(ctx, kv.SnapshotMeta{ID: a.Meta.ID, Index: a.Meta.Index, Term: a.Meta.Term, Size: a.Meta.Size}, st)
}

func badSnapshot(err error) error {
	return fmt.Errorf("%w: refused the snapshot, nothing was changed: %v", kv.ErrInvalidRequest, err)
}

// raftOps implements httpapi.RaftOperator on a server.
type raftOps struct{ store *kv.Server }

func (o *raftOps) RemovePeer(ctx context.Context, id, address string) error {
	peers, err := o.store.Configuration()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if (id != "" && p.ID == id) || (address != "" && p.Address == address) {
			return o.store.RemoveServer(p.ID)
		}
	}
	if id != "" {
		return fmt.Errorf("%w: no server with ID %q in the Raft configuration; see cairn operator raft list-peers", kv.ErrInvalidRequest, id)
	}
	return fmt.Errorf("%w: no server at address %q in the Raft configuration; see cairn operator raft list-peers", kv.ErrInvalidRequest, address)
}

func (o *raftOps) TransferLeader(ctx context.Context, id string) error {
	r := o.store.Raft()
	if r.State() != raft.Leader {
		return kv.ErrNotLeader
	}
	if id == "" {
		return o.store.TransferLeadership("", "")
	}
	peers, err := o.store.Configuration()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.ID == id {
			if !p.Voter {
				return fmt.Errorf("%w: server %q is not a voter and cannot lead", kv.ErrInvalidRequest, id)
			}
			return o.store.TransferLeadership(p.ID, p.Address)
		}
	}
	return fmt.Errorf("%w: no server with ID %q in the Raft configuration; see cairn operator raft list-peers", kv.ErrInvalidRequest, id)
}

// errReloadUnavailable is Reload called on an agent that is not running.
var errReloadUnavailable = errors.New("the agent is not running")

// infoStats is /v1/agent/self's Stats beyond build and runtime, as
// `consul info` shows them: agent, raft (servers), serf_lan, and the
// parts' own sections (vip).
func (w *wiring) infoStats() map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, v := range w.selfStats() {
		out[k] = v
	}
	out["agent"] = map[string]string{
		"services": strconv.Itoa(len(w.cat.LocalServices())),
		"checks":   strconv.Itoa(len(w.cat.LocalChecks())),
		"server":   strconv.FormatBool(w.cfg.Server),
	}
	_, members := w.ml.Members(nil)
	counts := map[membership.Status]int{}
	for _, m := range members {
		counts[m.Status]++
	}
	out["serf_lan"] = map[string]string{
		"members": strconv.Itoa(len(members)),
		"alive":   strconv.Itoa(counts[membership.StatusAlive]),
		"failed":  strconv.Itoa(counts[membership.StatusFailed]),
		"left":    strconv.Itoa(counts[membership.StatusLeft]),
	}
	if w.store != nil {
		out["raft"] = w.store.Stats()
	}
	return out
}
