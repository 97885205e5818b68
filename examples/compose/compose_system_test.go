//go:build system && linux

// Package compose is the Docker Compose example (docker-compose.yml,
// Makefile, web/); its test runs the README and checks the cluster end
// to end on the real Docker engine.
package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/examples"
	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemCompose runs the README's commands (images, up, traffic,
// dig, scale to 3, kill server1) under a project name and image tag of
// its own, then checks that nginx (its upstream rendered from the
// catalog) and the VIP reach exactly the running replicas as the app
// scales, with one server gone. Containers, network and images are
// removed whatever happens; nothing else on the engine is touched.
func TestSystemCompose(t *testing.T) {
	systemtest.NeedRoot(t) // the Docker socket
	for _, c := range []string{"docker", "docker-compose", "make", "curl", "nginx", "dig", "ldd"} {
		systemtest.NeedCommand(t, c)
	}
	systemtest.Need(t, "a Docker engine that answers", exec.Command("docker", "info").Run())

	id := fmt.Sprintf("cairnex%d%04d", os.Getpid(), rand.IntN(10000))
	c := &compose{t: t, env: []string{
		"COMPOSE_PROJECT_NAME=" + id,
		"CAIRN_TAG=" + id,
		"CAIRN_NET=" + freeNet(t),
		// Ports the engine picks, found with docker-compose port.
		"CAIRN_API=127.0.0.1:", "CAIRN_HTTP=127.0.0.1:", "CAIRN_VIP_HTTP=127.0.0.1:",
	}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run("docker-compose", "logs", "--no-color", "--tail", "40")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := c.run("docker-compose", "down", "-v", "-t", "2"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
		for _, img := range []string{"cairn", "web", "nginx"} {
			c.run("docker", "rmi", "cairn-example/"+img+":"+id)
		}
	})

	out := examples.RunREADME(t, "README.md", examples.RunOptions{Env: c.env, Timeout: 30 * time.Minute})
	t.Logf("README output:\n%s", out)

	nginx, vip, api := c.port("node1", 8080), c.port("node1", 8081), c.port("node1", 8500)
	// The README scaled to 3 and killed server1.
	for _, n := range []int{3, 1, 2} {
		if _, err := c.run("docker-compose", "up", "-d", "--scale", fmt.Sprintf("web=%d", n)); err != nil {
			t.Fatalf("scale web=%d: %v", n, err)
		}
		want := c.replicas()
		if len(want) != n {
			t.Fatalf("docker-compose ps web lists %v after scaling to %d", want, n)
		}
		waitServed(t, "nginx", nginx, want)
		waitServed(t, "the VIP", vip, want)
	}

	// web.cluster from inside an app container is the service's VIP, as
	// the catalog shows it.
	var entries []struct {
		ServiceTaggedAddresses map[string]struct{ Address string }
	}
	getJSON(t, "http://"+api+"/v1/catalog/service/web", &entries)
	if len(entries) == 0 || entries[0].ServiceTaggedAddresses["consul-virtual"].Address == "" {
		t.Fatalf("catalog entries of web %+v carry no consul-virtual address", entries)
	}
	wantVIP := entries[0].ServiceTaggedAddresses["consul-virtual"].Address
	dig, err := c.run("docker-compose", "exec", "-T", "web", "dig", "+short", "web.cluster")
	if err != nil || strings.TrimSpace(dig) != wantVIP {
		t.Errorf("dig +short web.cluster in a web container = %q, %v; want the VIP %s", dig, err, wantVIP)
	}

	// Two servers of three keep the quorum: the KV store still takes writes.
	req, _ := http.NewRequest(http.MethodPut, "http://"+api+"/v1/kv/compose-test", strings.NewReader("ok"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("KV put with server1 killed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "true" {
		t.Errorf("KV put with server1 killed = %d %q, want 200 true", resp.StatusCode, body)
	}
}

// compose runs docker and docker-compose in this directory with the
// test's project environment.
type compose struct {
	t   *testing.T
	env []string
}

func (c *compose) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		return out.String() + stderr.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

// port is where a service's container port is published ("127.0.0.1:32768").
func (c *compose) port(service string, port int) string {
	c.t.Helper()
	out, err := c.run("docker-compose", "port", service, fmt.Sprint(port))
	if err != nil || strings.TrimSpace(out) == "" {
		c.t.Fatalf("docker-compose port %s %d = %q, %v", service, port, out, err)
	}
	return strings.TrimSpace(out)
}

// replicas are the hostnames of the running web containers: Docker's
// default hostname is the container ID's first 12 characters.
func (c *compose) replicas() []string {
	c.t.Helper()
	out, err := c.run("docker-compose", "ps", "-q", "web")
	if err != nil {
		c.t.Fatal(err)
	}
	var hosts []string
	for _, id := range strings.Fields(out) {
		hosts = append(hosts, id[:12])
	}
	slices.Sort(hosts)
	return hosts
}

// waitServed sends requests to addr until the replicas that answer in a
// round of requests are exactly want (a removed replica must stop
// answering, a new one must start), within a deadline.
func waitServed(t *testing.T, what, addr string, want []string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	var got []string
	var lastErr error
	for time.Now().Before(deadline) {
		seen := map[string]bool{}
		lastErr = nil
		for range 12 * len(want) {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				lastErr = err
				break
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if host, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "hello from "); ok && resp.StatusCode == 200 {
				seen[host] = true
			} else {
				lastErr = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
			}
		}
		got = got[:0]
		for h := range seen {
			got = append(got, h)
		}
		slices.Sort(got)
		if lastErr == nil && slices.Equal(got, want) {
			return
		}
		time.Sleep(500 * time.Millisecond) // poll: nothing to wait on outside the containers
	}
	t.Fatalf("%s (%s): the replicas that answer are %v (last error %v); want exactly %v", what, addr, got, lastErr, want)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}

// freeNet picks a /24 (as its first three octets) in 172.28.0.0/14 that
// no Docker network and no route of this host overlaps.
func freeNet(t *testing.T) string {
	t.Helper()
	var used []netip.Prefix
	out, err := exec.Command("sh", "-c", `docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' $(docker network ls -q); ip -4 route | cut -d' ' -f1`).Output()
	if err != nil {
		t.Fatalf("list Docker networks and routes: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if p, err := netip.ParsePrefix(f); err == nil {
			used = append(used, p)
		}
	}
	for range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(28 + rand.IntN(4)), byte(rand.IntN(256)), 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			b := p.Addr().As4()
			return fmt.Sprintf("%d.%d.%d", b[0], b[1], b[2])
		}
	}
	t.Fatal("no free /24 in 172.28.0.0/14 for the compose network")
	return ""
}
