package agent

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/agent/tlsconfig"
)

// tlsSetup loads the certificates of the tls settings (agent/tlsconfig)
// before any listener opens, and registers their reloader: a reload
// re-reads the files, and new handshakes on the server port, HTTPS and
// outgoing server connections use the new ones; an unreadable or
// invalid certificate is refused and the old ones keep serving.
func (w *wiring) tlsSetup() error {
	cfg := w.cfg
	var domains []string
	for _, d := range []string{cfg.Domain, cfg.AltDomain} {
		if d = strings.TrimSuffix(d, "."); d != "" {
			domains = append(domains, d)
		}
	}
	m, warns, err := tlsconfig.New(cfg.TLS, tlsconfig.Names{Datacenter: cfg.Datacenter, Domains: domains})
	if err != nil {
		return err
	}
	for _, warn := range warns {
		w.log.Warn(warn)
	}
	if cfg.Ports.HTTPS > 0 && !m.HTTPSEnabled() {
		// Consul starts with an HTTPS port and no certificate (its own
		// test harness, sdk/testutil, sets one on every agent); it
		// cannot serve it, and neither would cairn: say so and go on.
		w.log.Warn("ports.https is set but no certificate is: the HTTPS API is off; set tls.https (or tls.defaults) cert_file and key_file to serve it", "https_port", cfg.Ports.HTTPS)
		w.cfg.Ports.HTTPS = -1
	}
	w.tls = m
	w.agent.onReload("tls", func(next Config) (func(), error) {
		return m.Prepare(next.TLS)
	})
	return nil
}

// listenHTTPS binds the HTTPS API's listener (ports { https = N },
// -https-port) beside or instead of HTTP.
func (w *wiring) listenHTTPS() error {
	cfg := w.cfg
	if cfg.Ports.HTTPS <= 0 {
		return nil
	}
	addr := net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.HTTPS))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for the HTTPS API on %s: %w (is another agent using -https-port=%d?)", addr, err, cfg.Ports.HTTPS)
	}
	w.httpsLn = ln
	w.onClose(func() error { ln.Close(); return nil })
	w.agent.mu.Lock()
	w.agent.httpsAddr = ln.Addr()
	w.agent.mu.Unlock()
	return nil
}

// HTTPSAddr is the address the HTTPS API listens on (nil without
// ports.https or before Started).
func (a *Agent) HTTPSAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpsAddr
}
