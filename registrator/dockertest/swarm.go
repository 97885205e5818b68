package dockertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// labelSwarm marks a swarm that InitSwarm created (in the swarm spec's
// labels): only such a swarm is ever left.
const labelSwarm = "cairn.test.swarm"

// InitSwarm makes the engine a Swarm manager (docker swarm init
// --advertise-addr 127.0.0.1, listening on 127.0.0.1:2377 only) unless it
// already is one. A swarm made this way is left (--force) when the last
// test using it ends, in this process or another: every user holds a
// shared lock on a file for as long as it uses the swarm, and a user that
// can take the lock exclusively when it is done is the last. A swarm that
// was there before (no cairn.test.swarm label) is never left.
func (e *Engine) InitSwarm() {
	e.t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "cairn-dockertest-swarm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		e.t.Fatalf("dockertest: swarm lock: %v", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		e.t.Fatalf("dockertest: swarm lock: %v", err)
	}
	e.t.Cleanup(func() { e.releaseSwarm(lock) })

	ctx := e.t.Context()
	info, err := e.Client.Info(ctx, client.InfoOptions{})
	if err != nil {
		e.t.Fatalf("dockertest: docker info: %v", err)
	}
	switch {
	case info.Info.Swarm.ControlAvailable:
		return
	case info.Info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive:
		e.t.Fatalf("dockertest: the engine is in a swarm (state %s) but not a manager; tests need a manager", info.Info.Swarm.LocalNodeState)
	}
	// Engine 20.10's swarmkit panics (nil task in SetServiceTasksRemove,
	// taking dockerd down) when the task reaper deletes a task while a
	// service is being removed. Keeping the task history makes the
	// reaper leave the tasks of live services alone; the tasks a
	// scale-down removes it still deletes, so a service is removed only
	// once they are gone (reaped).
	history := int64(1000)
	_, err = e.Client.SwarmInit(ctx, client.SwarmInitOptions{
		ListenAddr:    "127.0.0.1:2377",
		AdvertiseAddr: "127.0.0.1",
		Spec: swarm.Spec{
			Annotations:   swarm.Annotations{Labels: map[string]string{labelSwarm: e.RunID}},
			Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &history},
		},
	})
	if err != nil {
		// Another test process may have made it in the meantime.
		if info, ierr := e.Client.Info(ctx, client.InfoOptions{}); ierr == nil && info.Info.Swarm.ControlAvailable {
			return
		}
		e.t.Fatalf("dockertest: docker swarm init --advertise-addr 127.0.0.1: %v", err)
	}
	e.t.Logf("dockertest: swarm initialised; the last test using it leaves it")
}

// releaseSwarm drops this test's shared lock and, if no one else holds
// one, leaves a swarm that InitSwarm made.
func (e *Engine) releaseSwarm(lock *os.File) {
	defer lock.Close()
	fd := int(lock.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_UN); err != nil {
		e.t.Errorf("dockertest: swarm lock: %v", err)
		return
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return // another test uses the swarm; the last one leaves it
	}
	defer syscall.Flock(fd, syscall.LOCK_UN)
	ctx, cancel := cleanupCtx()
	defer cancel()
	sw, err := e.Client.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return // not a manager (any more): nothing to leave
	}
	if _, ours := sw.Swarm.Spec.Labels[labelSwarm]; !ours {
		return
	}
	if _, err := e.Client.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: true}); err != nil {
		e.t.Errorf("dockertest: cleanup: docker swarm leave --force: %v", err)
		return
	}
	// swarm init made docker_gwbridge, which leave does not remove.
	if _, err := e.Client.NetworkRemove(ctx, "docker_gwbridge", client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		e.t.Logf("dockertest: cleanup: docker network rm docker_gwbridge: %v", err)
	}
	e.t.Logf("dockertest: left the swarm tests made")
}

// ServiceSpec is a replicated Swarm service running the testserver.
type ServiceSpec struct {
	// Name is appended to the engine's Prefix; "" picks n<seq>.
	Name     string
	Replicas uint64
	// Labels are the service's (docker service create --label);
	// ContainerLabels its tasks' containers' (--container-label).
	Labels          map[string]string
	ContainerLabels map[string]string
	Env             []string
	// TCP ports the server serves HTTP on (not published: the routing
	// mesh needs IPVS, which these kernels lack).
	TCP []int
	// Networks the tasks attach to (overlay networks' names).
	Networks []string
	// DNSRR uses --endpoint-mode dnsrr (no VIP).
	DNSRR bool
	// Healthcheck gives the tasks the testserver's HEALTHCHECK.
	Healthcheck bool
}

// Service is a Swarm service this test made; it is removed when the test
// ends.
type Service struct {
	ID   string
	Name string
	e    *Engine
}

// CreateService creates a replicated service (InitSwarm first).
func (e *Engine) CreateService(spec ServiceSpec) *Service {
	e.t.Helper()
	name := e.Name(spec.Name)
	var args []string
	if len(spec.TCP) > 0 {
		var ps []string
		for _, p := range spec.TCP {
			ps = append(ps, strconv.Itoa(p))
		}
		args = append(args, "-tcp", strings.Join(ps, ","))
	}
	replicas := spec.Replicas
	cs := &swarm.ContainerSpec{
		Image:  e.Image(),
		Args:   args,
		Env:    spec.Env,
		Labels: e.labels(spec.ContainerLabels),
	}
	if spec.Healthcheck {
		cs.Healthcheck = healthConfig(0)
	}
	grace := 2 * time.Second
	cs.StopGracePeriod = &grace
	var nets []swarm.NetworkAttachmentConfig
	for _, n := range spec.Networks {
		nets = append(nets, swarm.NetworkAttachmentConfig{Target: n})
	}
	ss := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: e.labels(spec.Labels)},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: cs, Networks: nets, RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	if spec.DNSRR {
		ss.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR}
	}
	res, err := e.Client.ServiceCreate(e.t.Context(), client.ServiceCreateOptions{Spec: ss})
	if err != nil {
		e.t.Fatalf("dockertest: docker service create %s: %v", name, err)
	}
	s := &Service{ID: res.ID, Name: name, e: e}
	e.t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if left := pollCtx(ctx, cleanupTimeout, s.reaped(ctx)); left != "" {
			e.t.Errorf("dockertest: cleanup: service %s: tasks a scale-down removed are still there after %v (%s); removing the service now could crash the engine, so it is left", name, cleanupTimeout, left)
			return
		}
		if _, err := e.Client.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil && !isNotFound(err) {
			e.t.Errorf("dockertest: cleanup: docker service rm %s: %v", name, err)
		}
	})
	return s
}

// reaped is a poll condition, true once swarmkit's task reaper has
// deleted every task of the service that a scale-down marked for
// removal (or the service is gone); its state lists those left. Engine
// 20.10's swarmkit panics (a nil task in SetServiceTasksRemove, taking
// dockerd down) when a service is removed while the reaper deletes one
// of its tasks; a scale-down sets off such deletions whatever the task
// history limit (see InitSwarm).
func (s *Service) reaped(ctx context.Context) func() (bool, string) {
	f := make(client.Filters).Add("service", s.ID)
	return func() (bool, string) {
		res, err := s.e.Client.TaskList(ctx, client.TaskListOptions{Filters: f})
		switch {
		case err != nil && isNotFound(err):
			return true, "" // the service is gone already (Remove)
		case err != nil:
			return false, err.Error()
		}
		var left []string
		for _, t := range res.Items {
			if t.DesiredState == swarm.TaskStateRemove {
				left = append(left, fmt.Sprintf("%d:%s", t.Slot, t.Status.State))
			}
		}
		return len(left) == 0, strings.Join(left, " ")
	}
}

// Scale sets the service's replica count (docker service scale).
func (s *Service) Scale(n uint64) {
	s.e.t.Helper()
	ctx := s.e.t.Context()
	in, err := s.e.Client.ServiceInspect(ctx, s.ID, client.ServiceInspectOptions{})
	if err != nil {
		s.e.t.Fatalf("dockertest: inspect service %s: %v", s.Name, err)
	}
	spec := in.Service.Spec
	spec.Mode.Replicated.Replicas = &n
	if _, err := s.e.Client.ServiceUpdate(ctx, s.ID, client.ServiceUpdateOptions{Version: in.Service.Version, Spec: spec}); err != nil {
		s.e.t.Fatalf("dockertest: docker service scale %s=%d: %v", s.Name, n, err)
	}
}

// Remove is docker service rm, after scaling the service to 0 and
// waiting for its tasks to stop and be reaped: removing a service whose
// tasks are still changing is what crashes engine 20.10's swarmkit (see
// reaped).
func (s *Service) Remove() {
	s.e.t.Helper()
	s.Scale(0)
	s.WaitRunning(0, 2*time.Minute)
	WaitFor(s.e.t, 2*time.Minute, "the reaper to delete the tasks of service "+s.Name+" a scale to 0 removed", s.reaped(s.e.t.Context()))
	if _, err := s.e.Client.ServiceRemove(s.e.t.Context(), s.ID, client.ServiceRemoveOptions{}); err != nil && !isNotFound(err) {
		s.e.t.Fatalf("dockertest: docker service rm %s: %v", s.Name, err)
	}
}

// Tasks lists the service's tasks (docker service ps), every state.
func (s *Service) Tasks() []swarm.Task {
	s.e.t.Helper()
	f := make(client.Filters).Add("service", s.ID)
	res, err := s.e.Client.TaskList(s.e.t.Context(), client.TaskListOptions{Filters: f})
	if err != nil {
		s.e.t.Fatalf("dockertest: docker service ps %s: %v", s.Name, err)
	}
	return res.Items
}

// WaitRunning waits until exactly n tasks of the service run and every
// other task is shut down (its container gone or going), and returns the
// running tasks.
func (s *Service) WaitRunning(n int, timeout time.Duration) []swarm.Task {
	s.e.t.Helper()
	var running []swarm.Task
	WaitFor(s.e.t, timeout, fmt.Sprintf("%d running tasks of service %s", n, s.Name), func() (bool, string) {
		running = running[:0]
		var states []string
		settled := true
		for _, t := range s.Tasks() {
			states = append(states, fmt.Sprintf("%d:%s/%s", t.Slot, t.Status.State, t.DesiredState))
			if t.Status.State == swarm.TaskStateRunning && t.DesiredState == swarm.TaskStateRunning {
				running = append(running, t)
			} else if t.DesiredState == swarm.TaskStateRunning || t.Status.State == swarm.TaskStateRunning {
				settled = false // starting, or told to stop and not yet stopped
			}
		}
		slices.Sort(states)
		return settled && len(running) == n, strings.Join(states, " ")
	})
	return running
}

// TaskAddrs returns the addresses (without prefix length) the tasks have
// on the named network ("" for every network), sorted.
func TaskAddrs(tasks []swarm.Task, network string) []string {
	var out []string
	for _, t := range tasks {
		for _, na := range t.NetworksAttachments {
			if network != "" && na.Network.Spec.Name != network {
				continue
			}
			for _, a := range na.Addresses {
				out = append(out, a.Addr().String())
			}
		}
	}
	slices.Sort(out)
	return out
}
