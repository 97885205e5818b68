//go:build system

package dockertest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registrator/dockertest"
	"github.com/moby/moby/client"
)

// The harness itself: the image serves, its HEALTHCHECK flips, the exit
// codes are the ones asked for, and nothing is left behind.
func TestSystemHarness(t *testing.T) {
	e := dockertest.NeedDocker(t)
	c := e.Run(dockertest.ContainerSpec{Name: "web", TCP: []int{80}, UDP: []int{53}, Publish: true, Healthcheck: true, TermCode: 3})

	addr := c.HostPort("80/tcp")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("published on %s, want 127.0.0.1:<port>", addr)
	}
	var body string
	dockertest.WaitFor(t, 10*time.Second, "GET / on "+addr, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = strings.TrimSpace(string(b))
		return resp.StatusCode == 200, resp.Status
	})
	if !strings.HasPrefix(c.ID, body) {
		t.Errorf("GET / = %q, want the container's short id (%s)", body, c.ID[:12])
	}

	c.WaitHealth("healthy")
	c.SetHealthy(false)
	c.WaitHealth("unhealthy")
	c.SetHealthy(true)
	c.WaitHealth("healthy")

	c.Stop(-1)
	if code := c.WaitExited(); code != 3 {
		t.Errorf("exit code after docker stop = %d, want 3 (-term-code)", code)
	}

	d := e.Run(dockertest.ContainerSpec{TCP: []int{8080}})
	d.Exit(7)
	if code := d.WaitExited(); code != 7 {
		t.Errorf("exit code after /exit?code=7 = %d, want 7", code)
	}
	if got := e.Running(); len(got) != 0 {
		t.Errorf("running after stop and exit: %v, want none", got)
	}
}

// The proxy cuts an event stream and refuses connections until restored.
func TestSystemProxy(t *testing.T) {
	e := dockertest.NeedDocker(t)
	p := e.Proxy()
	cl, err := client.New(client.WithHost(p.Host))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Ping(t.Context(), client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	ev := cl.Events(t.Context(), client.EventsListOptions{})
	p.Cut()
	select {
	case err := <-ev.Err:
		t.Logf("event stream ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("event stream still open 10s after Cut")
	}
	if _, err := cl.Ping(t.Context(), client.PingOptions{}); err == nil {
		t.Fatal("ping through a cut proxy succeeded")
	}
	p.Restore()
	if _, err := cl.Ping(t.Context(), client.PingOptions{}); err != nil {
		t.Fatalf("ping after Restore: %v", err)
	}
}

// A swarm service's tasks come and go with its scale.
func TestSystemSwarmHarness(t *testing.T) {
	e := dockertest.NeedDocker(t)
	e.InitSwarm()
	net := e.Network(dockertest.NetworkSpec{Name: "ov", Driver: "overlay", Attachable: true})
	s := e.CreateService(dockertest.ServiceSpec{Name: "web", Replicas: 3, TCP: []int{80}, Networks: []string{net}})
	tasks := s.WaitRunning(3, 90*time.Second)
	t.Logf("addresses on %s: %v; all: %v", net, dockertest.TaskAddrs(tasks, net), dockertest.TaskAddrs(tasks, ""))
	if got := dockertest.TaskAddrs(tasks, net); len(got) != 3 {
		t.Errorf("task addresses on %s = %v, want 3", net, got)
	}
	s.Scale(1)
	s.WaitRunning(1, 90*time.Second)
}
