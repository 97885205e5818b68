//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestOutcomeUnknownWhenTheLeaderGoesWithTheWrite: real processes, no
// injection. Both followers are stopped (SIGSTOP), a PUT goes through the
// client agent, the leader appends it (its last log index moves) and
// cannot commit it; then the leader is killed with SIGKILL, or stopped
// too. The write's fate is now unknowable to the agent, which must say
// so: 503 with X-Cairn-Outcome: unknown and "the write may have been
// applied; read before retrying", never "No cluster leader" (that one
// promises nothing was written) nor "no quorum". Once the servers are
// back, reading the key tells what happened (both are legal: the
// followers may still find the leader's append in their sockets).
func TestOutcomeUnknownWhenTheLeaderGoesWithTheWrite(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, 1, "-rpc-hold-timeout", "3s")
	agent := c.clients[0]
	httpc := &http.Client{Timeout: 30 * time.Second}
	// The agents' own first writes (each binds its gossip key) must be
	// done: the test reads the leader's log index moving as "the PUT was
	// appended", which another write would fake.
	apic, err := api.NewClient(&api.Config{Address: agent.ports.httpAddr()})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every agent bound its gossip key", 20*time.Second, func() (bool, string) {
		keys, _, err := apic.KV().Keys("_cairn/gossip/key/", "", nil)
		return err == nil && len(keys) == 4, fmt.Sprint(keys, err)
	})

	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"leader killed", syscall.SIGKILL},
		{"leader stopped", syscall.SIGSTOP},
	} {
		type answer struct {
			code    int
			outcome string
			body    string
			err     error
		}
		put := func(key string) <-chan answer {
			done := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodPut, "http://"+agent.ports.httpAddr()+"/v1/kv/"+key, strings.NewReader("v"))
				resp, err := httpc.Do(req)
				if err != nil {
					done <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				done <- answer{code: resp.StatusCode, outcome: resp.Header.Get("X-Cairn-Outcome"), body: string(b)}
			}()
			return done
		}
		// The leader steps down half a second after it loses its
		// followers, so the write must reach it first: the client
		// agent tries the servers in random order (one that timed out
		// last), and a try that went to a stopped follower first is
		// let go and made again.
		var (
			leader    *clusterNode
			followers []*clusterNode
			key       string
			done      <-chan answer
		)
		for try := 1; ; try++ {
			leader = c.leader()
			followers = c.followers(leader)
			before := lastLogIndex(t, leader)
			for _, f := range followers {
				f.proc.signal(syscall.SIGSTOP)
			}
			key = fmt.Sprintf("outcome/%s-%d", strings.ReplaceAll(tc.name, " ", "-"), try)
			done = put(key)
			appended := false
			deadline := time.Now().Add(2 * time.Second)
			for !appended && time.Now().Before(deadline) {
				appended = lastLogIndex(t, leader) > before
			}
			if appended {
				break
			}
			for _, f := range followers {
				f.proc.signal(syscall.SIGCONT)
			}
			<-done
			if try == 8 {
				t.Fatalf("%s: the leader never appended the write in %d tries", tc.name, try)
			}
		}
		leader.proc.signal(tc.sig)
		if tc.sig == syscall.SIGKILL {
			leader.proc.wait(10 * time.Second)
		}
		a := <-done
		t.Logf("%s: PUT answered %d, %s: %q, %v", tc.name, a.code, "X-Cairn-Outcome", a.outcome, a.err)
		if a.err != nil || a.code != http.StatusServiceUnavailable || a.outcome != "unknown" ||
			!strings.Contains(a.body, "the write may have been applied; read before retrying") ||
			strings.Contains(a.body, "No cluster leader") || strings.Contains(a.body, "no quorum") {
			t.Fatalf("%s: PUT = %d (X-Cairn-Outcome %q) %q, %v; want 503, X-Cairn-Outcome: unknown, \"the write may have been applied; read before retrying\"", tc.name, a.code, a.outcome, a.body, a.err)
		}

		for _, f := range followers {
			f.proc.signal(syscall.SIGCONT)
		}
		if tc.sig == syscall.SIGKILL {
			c.restart(leader)
		} else {
			leader.proc.signal(syscall.SIGCONT)
		}
		c.waitReady(c.all()...)
		// Classified by reading back: either is right, as long as the
		// read answers and the value is the one written.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		e, _, err := agent.api.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		cancel()
		switch {
		case err != nil:
			t.Fatalf("%s: read back: %v", tc.name, err)
		case e == nil:
			t.Logf("%s: read back: not applied", tc.name)
		case string(e.Value) == "v":
			t.Logf("%s: read back: applied", tc.name)
		default:
			t.Fatalf("%s: read back %q; want \"v\" or no key", tc.name, e.Value)
		}
	}
}

// lastLogIndex is the server's Raft last_log_index from /v1/agent/self.
func lastLogIndex(t *testing.T, n *clusterNode) uint64 {
	t.Helper()
	self, err := n.api.Agent().Self()
	if err != nil {
		t.Fatalf("%s: /v1/agent/self: %v", n.name, err)
	}
	r, _ := self["Stats"]["raft"].(map[string]any)
	i, err := strconv.ParseUint(fmt.Sprint(r["last_log_index"]), 10, 64)
	if err != nil {
		t.Fatalf("%s: Stats.raft.last_log_index = %v: %v", n.name, r["last_log_index"], err)
	}
	return i
}
