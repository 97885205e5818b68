package checks

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// newTransport returns the transport of HTTP checks, like Consul's
// (go-cleanhttp's DefaultTransport with keep-alives off): proxies from the
// environment, HTTP/2 when the server offers it. insecure skips
// certificate verification (TLSSkipVerify).
func newTransport(cfg Config, insecure bool) *http.Transport {
	tlsCfg := cfg.TLSClientConfig.Clone() // nil stays nil
	if insecure {
		if tlsCfg == nil {
			tlsCfg = new(tls.Config)
		}
		tlsCfg.InsecureSkipVerify = true
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           cfg.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableKeepAlives:     true,
		ForceAttemptHTTP2:     true,
	}
}

// httpTransport is the transport of HTTP check def: the shared one, or,
// when def sets TLSServerName, a copy that sends that name (SNI) and
// verifies the certificate against it, as Consul's per-check TLS
// configuration does. Keep-alives are off, so a copy holds no
// connections.
func (r *Runner) httpTransport(def Definition) *http.Transport {
	t := r.http
	if def.TLSSkipVerify {
		t = r.httpInsecure
	}
	if def.TLSServerName == "" {
		return t
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = new(tls.Config)
	}
	t.TLSClientConfig.ServerName = def.TLSServerName
	return t
}

// probeHTTP sends c's request once. 2xx is passing, 429 Too Many Requests
// warning, anything else critical; the output is "HTTP <method> <url>:
// <status> Output: <the last OutputMaxSize bytes of the body>", or the
// error when there is no response.
func (r *Runner) probeHTTP(ctx context.Context, c *check) (Status, string) {
	method := c.def.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, c.def.HTTP, strings.NewReader(c.def.Body))
	if err != nil {
		return Critical, err.Error()
	}
	req.Header = http.Header(c.def.Header).Clone()
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}

	// The client's Timeout (not a context deadline) bounds the whole
	// exchange, body included, and says so in its error, as in Consul:
	// `Get "…": context deadline exceeded (Client.Timeout exceeded while
	// awaiting headers)`.
	client := &http.Client{Transport: c.transport, Timeout: c.timeout}
	resp, err := client.Do(req)
	if err != nil {
		return Critical, err.Error()
	}
	defer resp.Body.Close()

	// Like Consul, keep the end of the body (a circular buffer); an error
	// while reading it (a timeout, say) leaves what was read.
	body := newTail(r.cfg.OutputMaxSize)
	if _, err := io.Copy(body, resp.Body); err != nil {
		r.log.Debug("check: reading the HTTP response body failed", "check", c.def.ID, "error", err)
	}
	output := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, c.def.HTTP, resp.Status, body.Bytes())
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return Passing, output
	case resp.StatusCode == http.StatusTooManyRequests:
		return Warning, output
	}
	return Critical, output
}
