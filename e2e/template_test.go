//go:build unix

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// These tests run `cairn template` against `cairn agent -dev` with a real
// nginx (Debian's package) in front of Go backends, all on 127.0.0.1:
// nginx proxies to the upstreams cairn renders, is reloaded when they
// change, and keeps serving its old configuration when a result fails
// `nginx -t`.

// nginxBin finds nginx. Outside CI a machine without it skips the test;
// under CI=true it fails, since CI installs it (.ci/run).
func nginxBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed, and CI=true: install the Debian package nginx (apt-get install nginx)")
	}
	t.Skip("nginx is not installed; apt-get install nginx to run the template end-to-end tests")
	return ""
}

// nginxServer is one nginx master this test owns, with its prefix, config,
// pid and logs in dir, listening on 127.0.0.1:port and proxying "/" to the
// upstream "web" that dir/conf.d/web.conf defines.
type nginxServer struct {
	t    *testing.T
	bin  string
	dir  string
	conf string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncBuffer
}

// args are the flags that point an nginx command at this server.
func (n *nginxServer) args() string { return fmt.Sprintf("%s -p %s/ -c %s", n.bin, n.dir, n.conf) }

// checkCommand is the -check: nginx -t of the whole configuration, which
// includes the freshly rendered upstream.
func (n *nginxServer) checkCommand() string { return n.args() + " -t -q" }

// reloadCommand reloads nginx and notes each reload in dir/reloads.
func (n *nginxServer) reloadCommand() string {
	return n.args() + " -s reload && echo reload >> " + filepath.Join(n.dir, "reloads")
}

func (n *nginxServer) reloads() int {
	b, _ := os.ReadFile(filepath.Join(n.dir, "reloads"))
	return strings.Count(string(b), "reload\n")
}

// writeNginxConf writes dir/nginx.conf for a server on port.
func writeNginxConf(t *testing.T, dir string, port int) string {
	t.Helper()
	for _, d := range []string{"conf.d", "tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers as root too: they read nothing, and dir is 0700
	}
	conf := fmt.Sprintf(`# written by cairn's template e2e test
daemon off;
%[3]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[1]s/conf.d/*.conf;
    server {
        listen 127.0.0.1:%[2]d;
        location / {
            proxy_pass http://web;
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout;
        }
    }
}
`, dir, port, user)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx starts nginx on dir's configuration (the upstream must be
// rendered already) and waits until it answers. It is stopped, and its
// error log shown on failure, when the test ends.
func startNginx(t *testing.T, bin, dir, conf string, port int) *nginxServer {
	t.Helper()
	n := &nginxServer{t: t, bin: bin, dir: dir, conf: conf, port: port, done: make(chan struct{}), out: &syncBuffer{}}
	n.cmd = exec.Command(bin, "-p", dir+"/", "-c", conf)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() {
		defer close(n.done)
		n.cmd.Wait()
	}()
	t.Cleanup(func() {
		n.cmd.Process.Signal(syscall.SIGQUIT) // graceful: the master stops its workers
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Logf("nginx output:\n%s\nnginx error.log:\n%s", n.out.String(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := n.get(); err == nil {
			return n
		} else if time.Now().After(deadline) {
			t.Fatalf("nginx not answering on 127.0.0.1:%d after 10s: %v\n%s", port, err, n.out.String())
		}
		select {
		case <-n.done:
			t.Fatalf("nginx exited: %s", n.out.String())
		case <-time.After(50 * time.Millisecond): // polling another process
		}
	}
}

var nginxClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get asks nginx for "/" and returns which backend answered.
func (n *nginxServer) get() (string, error) {
	resp, err := nginxClient.Get("http://127.0.0.1:" + strconv.Itoa(n.port) + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), err
}

// awaitBackends sends requests through nginx until exactly the backends
// in want have answered (round robin reaches each within a few tries),
// or fails after timeout with what it saw.
func (n *nginxServer) awaitBackends(timeout time.Duration, want ...string) time.Duration {
	n.t.Helper()
	start := time.Now()
	for {
		seen := map[string]bool{}
		var lastErr error
		for range 4 * len(want) {
			name, err := n.get()
			if err != nil {
				lastErr = err
				continue
			}
			seen[name] = true
		}
		ok := len(seen) == len(want)
		for _, w := range want {
			ok = ok && seen[w]
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			n.t.Fatalf("after %s nginx reaches %v, want exactly %v (last error: %v)", timeout, seenNames(seen), want, lastErr)
		}
		time.Sleep(100 * time.Millisecond) // polling another process
	}
}

func seenNames(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// nameServer is an HTTP server on 127.0.0.1 that answers its name; it
// returns the port.
func nameServer(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// templateAgent starts `cairn agent -dev` on free ports and returns its HTTP
// address and a client once it has a leader.
func templateAgent(t *testing.T) (string, *api.Client) {
	t.Helper()
	p := freePorts(t)
	a := start(t, "agent", append([]string{"agent", "-dev"}, p.flags()...)...)
	return p.httpAddr(), a.waitLeader(p.httpAddr())
}

// awaitOutput waits until the process printed want, polling its output.
func (p *proc) awaitOutput(want string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), want) {
		if p.exited() {
			p.t.Fatalf("%s exited (%v) before printing %q; output:\n%s", p.name, p.state, want, p.out.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q within %s; output:\n%s", p.name, want, timeout, p.out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
}

func putKey(t *testing.T, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("kv put %s: %v", key, err)
	}
}

// kvUpstream renders nginx's upstream from the KV store, with an
// optional line of extra configuration.
const kvUpstream = `upstream web {
{{- range ls "upstreams/web" }}
    server {{ .Value }};
{{- end }}
    {{ keyOrDefault "upstreams/extra" "" }}
}
`

// TestTemplateNginx: nginx proxies to the upstreams rendered from the
// KV store; a new one is rendered, checked and nginx reloaded within the
// wait window; a result nginx -t refuses is put back, nginx is not
// reloaded and keeps serving; the next good result goes through.
func TestTemplateNginx(t *testing.T) {
	bin := nginxBin(t)
	addr, c := templateAgent(t)
	dir := t.TempDir()
	port := freeTCPPort(t)
	conf := writeNginxConf(t, dir, port)
	upstream := filepath.Join(dir, "conf.d", "web.conf")
	tmpl := filepath.Join(dir, "web.ctmpl")
	if err := os.WriteFile(tmpl, []byte(kvUpstream), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b, c3 := nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c")
	putKey(t, c, "upstreams/web/a", fmt.Sprintf("127.0.0.1:%d", a))
	putKey(t, c, "upstreams/web/b", fmt.Sprintf("127.0.0.1:%d", b))

	// The first render, before nginx starts: -once.
	if code, _, stderr := cairn(t, nil, "", "template", "-consul-addr", addr, "-template", tmpl+":"+upstream, "-once"); code != 0 {
		t.Fatalf("cairn template -once: exit %d\n%s", code, stderr)
	}
	ngx := startNginx(t, bin, dir, conf, port)
	ngx.awaitBackends(10*time.Second, "a", "b")

	tp := start(t, "template", "template", "-consul-addr", addr,
		"-template", tmpl+":"+upstream+":"+ngx.reloadCommand(),
		"-check", ngx.checkCommand(), "-wait", "200ms:1s", "-log-level", "debug")
	tp.awaitOutput("protocol=h2c", 10*time.Second)
	tp.awaitOutput(`msg="up to date"`, 10*time.Second) // the file rendered by -once is current

	// A third upstream: rendered after the wait, checked, nginx reloaded.
	putKey(t, c, "upstreams/web/c", fmt.Sprintf("127.0.0.1:%d", c3))
	took := ngx.awaitBackends(10*time.Second, "a", "b", "c")
	t.Logf("the third upstream was served %s after the KV write (wait 200ms:1s)", took.Round(time.Millisecond))
	if n := ngx.reloads(); n != 1 {
		t.Errorf("nginx reloaded %d times, want 1", n)
	}
	good, err := os.ReadFile(upstream)
	if err != nil {
		t.Fatal(err)
	}

	// A result nginx -t refuses.
	putKey(t, c, "upstreams/extra", "bogus_directive on;")
	tp.awaitOutput(`msg="check failed"`, 10*time.Second)
	if got, _ := os.ReadFile(upstream); string(got) != string(good) {
		t.Errorf("after the refused result %s holds:\n%s\nwant the previous:\n%s", upstream, got, good)
	}
	if !strings.Contains(tp.out.String(), `unknown directive \"bogus_directive\"`) {
		t.Errorf("the check failure does not quote nginx's complaint; output:\n%s", tp.out.String())
	}
	if n := ngx.reloads(); n != 1 {
		t.Errorf("nginx reloaded %d times, want still 1", n)
	}
	ngx.awaitBackends(5*time.Second, "a", "b", "c")

	// The next good result goes through.
	if _, err := c.KV().Delete("upstreams/extra", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Delete("upstreams/web/a", nil); err != nil {
		t.Fatal(err)
	}
	ngx.awaitBackends(10*time.Second, "b", "c")
	if n := ngx.reloads(); n != 2 {
		t.Errorf("nginx reloaded %d times, want 2", n)
	}
	tp.signal(syscall.SIGTERM)
	if code := tp.wait(10 * time.Second); code != 0 {
		t.Errorf("cairn template exited %d after SIGTERM, want 0", code)
	}
}

// serviceUpstream renders nginx's upstream from the catalog.
const serviceUpstream = `upstream web { {{- range service "web" }}
    server {{ .Address }}:{{ .Port }};{{ end }}
}
`

// TestTemplateNginxServices is the scenario with services
// registered in the catalog: two backends, then a third within the wait
// window; and how long a registration takes to reach the file.
func TestTemplateNginxServices(t *testing.T) {
	bin := nginxBin(t)
	addr, c := templateAgent(t)
	register := func(name string, port int) {
		t.Helper()
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-" + name, Name: "web", Address: "127.0.0.1", Port: port})
		if err != nil {
			t.Fatalf("register web-%s: %v", name, err)
		}
	}
	dir := t.TempDir()
	port := freeTCPPort(t)
	conf := writeNginxConf(t, dir, port)
	upstream := filepath.Join(dir, "conf.d", "web.conf")
	tmpl := filepath.Join(dir, "web.ctmpl")
	if err := os.WriteFile(tmpl, []byte(serviceUpstream), 0o644); err != nil {
		t.Fatal(err)
	}
	register("a", nameServer(t, "a"))
	register("b", nameServer(t, "b"))
	if code, _, stderr := cairn(t, nil, "", "template", "-consul-addr", addr, "-template", tmpl+":"+upstream, "-once"); code != 0 {
		t.Fatalf("cairn template -once: exit %d\n%s", code, stderr)
	}
	ngx := startNginx(t, bin, dir, conf, port)
	ngx.awaitBackends(10*time.Second, "a", "b")

	tp := start(t, "template", "template", "-consul-addr", addr,
		"-template", tmpl+":"+upstream+":"+ngx.reloadCommand(),
		"-check", ngx.checkCommand(), "-wait", "200ms:1s")
	tp.awaitOutput("msg=", 10*time.Second)
	before, _ := os.Stat(upstream)

	registered := time.Now()
	register("c", nameServer(t, "c"))
	acked := time.Since(registered)
	took := ngx.awaitBackends(10*time.Second, "a", "b", "c")
	if n := ngx.reloads(); n != 1 {
		t.Errorf("nginx reloaded %d times, want 1", n)
	}
	after, err := os.Stat(upstream)
	if err != nil || os.SameFile(before, after) {
		t.Fatalf("the upstream file was not replaced: %v", err)
	}
	toDisk := after.ModTime().Sub(registered)
	t.Logf("registration to file on disk: %s, of which the PUT took %s and the wait 200ms; served by nginx %s after the PUT returned",
		toDisk.Round(time.Millisecond), acked.Round(time.Millisecond), took.Round(time.Millisecond))
}

// BenchmarkTemplateRegistrationToFile is the time from a service
// registration (PUT /v1/agent/service/register on a -dev agent) to
// `cairn template` (no wait configured) having the new instance in the
// file on disk: the agent's catalog and blocking query, one h2c stream,
// the render and the atomic write. Between registrations the runner's
// view is given time to be back in its blocking query.
func BenchmarkTemplateRegistrationToFile(b *testing.B) {
	httpPort := freeTCPPort(b)
	addr := "127.0.0.1:" + strconv.Itoa(httpPort)
	runTB(b, "agent", "-dev", "-http-port", strconv.Itoa(httpPort), "-dns-port", "-1",
		"-serf-lan-port", strconv.Itoa(freeTCPPort(b)), "-server-port", strconv.Itoa(freeTCPPort(b)))
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if leader, err := c.Status().Leader(); err == nil && leader != "" {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("agent without a leader after 20s: %v", err)
		}
		time.Sleep(25 * time.Millisecond) // polling another process
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-0", Name: "web", Address: "127.0.0.1", Port: 1000}); err != nil {
		b.Skipf("cannot register services on this agent (%v)", err)
	}
	dir := b.TempDir()
	tmpl := filepath.Join(dir, "web.ctmpl")
	dest := filepath.Join(dir, "web.conf")
	if err := os.WriteFile(tmpl, []byte(serviceUpstream), 0o644); err != nil {
		b.Fatal(err)
	}
	runTB(b, "template", "-consul-addr", addr, "-template", tmpl+":"+dest)
	awaitFile := func(want string) {
		for deadline := time.Now().Add(10 * time.Second); ; {
			if got, _ := os.ReadFile(dest); strings.Contains(string(got), want) {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%q not in %s after 10s", want, dest)
			}
			time.Sleep(time.Millisecond) // polling another process's file
		}
	}
	awaitFile(":1000;")
	i := 0
	for b.Loop() {
		b.StopTimer()
		time.Sleep(150 * time.Millisecond) // the view spaces its queries 100ms apart
		i++
		b.StartTimer()
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("web-%d", i), Name: "web", Address: "127.0.0.1", Port: 1000 + i}); err != nil {
			b.Fatal(err)
		}
		awaitFile(fmt.Sprintf(":%d;", 1000+i))
	}
}

// runTB runs the cairn binary with args until the benchmark ends.
func runTB(tb testing.TB, args ...string) {
	tb.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(cairnBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cmd.Wait()
	}()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if tb.Failed() {
			tb.Logf("cairn %s:\n%s", strings.Join(args, " "), out.String())
		}
	})
}
