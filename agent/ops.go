package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
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
	// Consul serves its CPU profile and trace with enable_debug, which a
	// reload may change, or behind operator read when ACLs are on (they
	// are not turned on by a reload).
	var profiling atomic.Bool
	profiling.Store(w.cfg.EnableDebug || w.cfg.ACL.Enabled)
	o.Profiling = profiling.Load
	w.agent.onReload("enable_debug", func(next Config) (func(), error) {
		return func() { profiling.Store(next.EnableDebug || next.Dev || w.cfg.ACL.Enabled) }, nil
	})
	if w.tel != nil {
		o.Metrics = w.tel.reg.Handler()
	}
	if w.cat != nil {
		w.agent.onReload("definitions", w.definitionsReloader())
	}
	if logs := logging.Of(w.log); logs != nil {
		o.Logs = logs
	}
	// Every agent takes snapshots and Raft changes; a client or a
	// follower forwards them to the leader, as Consul's do.
	o.Snapshots = snapshots{router: w.routerFor()}
	o.Raft = w.routerFor()
	return o
}

// snapshots implements httpapi.Snapshots through the router: the
// leader's state, wherever the request came in.
type snapshots struct{ router *forward.Router }

func (s snapshots) Save(ctx context.Context, w io.Writer, started func(index uint64)) error {
	meta, state, err := s.router.Snapshot(ctx)
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
	state, err := io.ReadAll(st)
	if err != nil {
		return badSnapshot(fmt.Errorf("%w: %v", snapshot.ErrCorrupt, err))
	}
	if _, err := kv.SummarizeState(bytes.NewReader(state)); err != nil {
		return badSnapshot(fmt.Errorf("%w: %v", snapshot.ErrCorrupt, err))
	}
	return s.router.Restore(ctx, kv.SnapshotMeta{ID: a.Meta.ID, Index: a.Meta.Index, Term: a.Meta.Term, Size: a.Meta.Size}, state)
}

func badSnapshot(err error) error {
	return fmt.Errorf("%w: refused the snapshot, nothing was changed: %v", kv.ErrInvalidRequest, err)
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
