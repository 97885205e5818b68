package checks

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// These run real HTTP checks against httptest servers on 127.0.0.1, in
// real time: each waits for the check's first result (no stagger).

func TestHTTPCheck(t *testing.T) {
	status := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	// echo answers with what it was sent.
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "method=%s host=%s ua=%q accept=%q token=%q body=%q",
			r.Method, r.Host, r.UserAgent(), r.Header.Get("Accept"), r.Header.Get("X-Token"), body)
	}
	long := "HEAD" + strings.Repeat("x", 5000) + "TAIL"

	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		change  func(*Definition)
		want    Status
		// wantOutput follows "HTTP <method> <url>: "
		wantOutput string
	}{
		{"200 is passing", status(200, "ok"), nil, Passing, "200 OK Output: ok"},
		{"204 is passing", status(204, ""), nil, Passing, "204 No Content Output: "},
		{"429 is warning", status(429, "slow down"), nil, Warning, "429 Too Many Requests Output: slow down"},
		{"500 is critical", status(500, "boom"), nil, Critical, "500 Internal Server Error Output: boom"},
		{"404 is critical", status(404, "no such page"), nil, Critical, "404 Not Found Output: no such page"},
		{"redirects are followed", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				http.Redirect(w, r, "/ready", http.StatusFound)
				return
			}
			io.WriteString(w, "ready")
		}, nil, Passing, "200 OK Output: ready"},
		{"defaults: GET, Consul's User-Agent and Accept", echo, nil, Passing,
			`200 OK Output: method=GET host=HOST ua="Consul Health Check" accept="text/plain, text/*, */*" token="" body=""`},
		{"method, header, Host and body", echo, func(d *Definition) {
			d.Method = "POST"
			d.Header = map[string][]string{"X-Token": {"secret"}, "Host": {"web.internal"}, "User-Agent": {"probe/1"}}
			d.Body = `{"deep":true}`
		}, Passing, `200 OK Output: method=POST host=web.internal ua="probe/1" accept="text/plain, text/*, */*" token="secret" body="{\"deep\":true}"`},
		{"output keeps the last 4 KiB of the body", status(200, long), nil, Passing,
			"200 OK Output: " + long[len(long)-BufSize:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			def := Definition{ID: "web", HTTP: srv.URL + "/health", Interval: time.Minute}
			if tc.change != nil {
				tc.change(&def)
			}
			_, rec := startRunner(t, false, nil, def)

			method := cmpOr(def.Method, "GET")
			wantOutput := strings.ReplaceAll(tc.wantOutput, "HOST", strings.TrimPrefix(srv.URL, "http://"))
			want := fmt.Sprintf("update web %s %q", tc.want, "HTTP "+method+" "+def.HTTP+": "+wantOutput)
			if got := rec.waitLines(t, 1); got != want {
				t.Errorf("first result\n got %s\nwant %s", got, want)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestHTTPCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the check gave up
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	url := srv.URL + "/slow"
	_, rec := startRunner(t, false, nil, Definition{ID: "slow", HTTP: url, Interval: time.Minute, Timeout: 100 * time.Millisecond})
	want := fmt.Sprintf(`update slow critical "Get \"%s\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"`, url)
	if got := rec.waitLines(t, 1); got != want {
		t.Errorf("check of a server that does not answer\n got %s\nwant %s", got, want)
	}
}

func TestHTTPCheckConnectionRefused(t *testing.T) {
	addr := closedPort(t)
	url := "http://" + addr + "/health"
	_, rec := startRunner(t, false, nil, Definition{ID: "web", HTTP: url, Interval: time.Minute})
	want := fmt.Sprintf(`update web critical "Get \"%s\": dial tcp %s: connect: connection refused"`, url, addr)
	if got := rec.waitLines(t, 1); got != want {
		t.Errorf("check of a closed port\n got %s\nwant %s", got, want)
	}
}

func TestHTTPSCheck(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	// The refused handshakes would log to stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/health"
	trustServer := func(c *Config) { c.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig }

	for _, tc := range []struct {
		name       string
		skipVerify bool
		change     func(*Config)
		want       string
	}{
		{"untrusted certificate is critical", false, nil,
			fmt.Sprintf(`update web critical "Get \"%s\": tls: failed to verify certificate: x509: certificate signed by unknown authority"`, url)},
		{"TLSSkipVerify accepts it", true, nil,
			fmt.Sprintf(`update web passing "HTTP GET %s: 200 OK Output: secure"`, url)},
		{"Config.TLSClientConfig trusts its CA", false, trustServer,
			fmt.Sprintf(`update web passing "HTTP GET %s: 200 OK Output: secure"`, url)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rec := startRunner(t, false, tc.change,
				Definition{ID: "web", HTTP: url, TLSSkipVerify: tc.skipVerify, Interval: time.Minute})
			if got := rec.waitLines(t, 1); got != tc.want {
				t.Errorf("first result\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestHTTPSCheckTLSServerName: TLSServerName is the name the probe sends
// (SNI) and the name the certificate must be valid for, whatever the URL's
// host. The agent's adapter once dropped it, so checks of a service behind
// a name-based TLS front end probed with an empty SNI.
func TestHTTPSCheckTLSServerName(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sni="+r.TLS.ServerName)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/health" // https://127.0.0.1:port: no SNI unless TLSServerName says
	trustServer := func(c *Config) { c.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig }

	for _, tc := range []struct {
		name, serverName string
		skipVerify       bool
		want             string
	}{
		{"no TLSServerName sends no SNI", "", false,
			fmt.Sprintf(`update web passing "HTTP GET %s: 200 OK Output: sni="`, url)},
		{"TLSServerName is sent and verified", "example.com", false,
			fmt.Sprintf(`update web passing "HTTP GET %s: 200 OK Output: sni=example.com"`, url)},
		{"a certificate not valid for TLSServerName is critical", "db.internal", false,
			fmt.Sprintf(`update web critical "Get \"%s\": tls: failed to verify certificate: x509: certificate is valid for example.com, *.example.com, not db.internal"`, url)},
		{"TLSSkipVerify still sends TLSServerName", "db.internal", true,
			fmt.Sprintf(`update web passing "HTTP GET %s: 200 OK Output: sni=db.internal"`, url)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rec := startRunner(t, false, trustServer,
				Definition{ID: "web", HTTP: url, TLSServerName: tc.serverName, TLSSkipVerify: tc.skipVerify, Interval: time.Minute})
			if got := rec.waitLines(t, 1); got != tc.want {
				t.Errorf("first result\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// closedPort returns a 127.0.0.1 address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
