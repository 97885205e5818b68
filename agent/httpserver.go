package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/ui"
)

// listen binds the HTTP API's listener and DNS's socket and listener
// before anything runs, so that a busy port fails the start and the
// ports are known to membership (it advertises them).
func (w *wiring) listen() error {
	cfg := w.cfg
	w.httpPort, w.dnsPort = cfg.Ports.HTTP, cfg.Ports.DNS
	if cfg.Ports.HTTP >= 0 {
		addr := net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.HTTP))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for the HTTP API on %s: %w (is another agent using -http-port=%d? move it with -http-port)", addr, err, cfg.Ports.HTTP)
		}
		w.httpLn = ln
		w.onClose(func() error { ln.Close(); return nil }) // the HTTP part may have closed it
		w.httpPort = ln.Addr().(*net.TCPAddr).Port
	}
	if cfg.Ports.DNS >= 0 {
		pc, ln, err := listenDNS(cfg.ClientAddr, cfg.Ports.DNS)
		if err != nil {
			return err
		}
		// dns.Server.Run closes them; these are for the paths that never
		// get there (a second Close is harmless).
		w.dnsPC, w.dnsLn = pc, ln
		w.onClose(func() error { pc.Close(); ln.Close(); return nil })
		w.dnsPort = pc.LocalAddr().(*net.UDPAddr).Port
	}
	return nil
}

// httpPart returns the Consul-compatible HTTP API. Blocking queries
// (?index=&wait=) hold requests for minutes: their contexts end as soon
// as the part stops, so they answer at once; other requests get
// ShutdownTimeout. Without a listener (-http-port=-1) the part only
// waits.
func (w *wiring) httpPart() (part, error) {
	cfg := w.cfg
	revision, _ := Revision()
	serverPort := 0
	if w.mux != nil {
		serverPort = w.mux.Addr().(*net.TCPAddr).Port
	}
	queries, err := w.queryRegistry()
	if err != nil {
		return part{}, err
	}
	var root *httpapi.CARoot
	var trustDomain string
	if cfg.ConnectEnabled && cfg.Server {
		if root, trustDomain, err = connectRoot(w.nodeID, cfg.Datacenter); err != nil {
			return part{}, err
		}
	}
	txns, err := w.txnCoordinator()
	if err != nil {
		return part{}, err
	}
	acls, err := w.httpACLs()
	if err != nil {
		return part{}, err
	}
	resolver, err := w.aclResolver() // nil when ACLs are off
	if err != nil {
		return part{}, err
	}
	handler, err := httpapi.NewHandler(httpapi.Config{
		CatalogTxn:          txns,
		ACLSystem:           acls,
		ConnectRoot:         root,
		TrustDomain:         trustDomain,
		Store:               w.tel.store(w.routerFor()),
		Cluster:             &cluster{agent: w.agent, ml: w.ml, router: w.routerFor(), leave: w.leave},
		Catalog:             w.httpCatalog(),
		Events:              w.events,
		Coordinates:         w.ml,
		PreparedQueries:     queries,
		Autopilot:           &autopilot{ml: w.ml, router: w.routerFor()},
		Keyring:             keyring{w.ml},
		ACL:                 resolver,
		EnableKeyListPolicy: cfg.ACL.EnableKeyListPolicy,
		Self: httpapi.Self{
			NodeName:    cfg.NodeName,
			NodeID:      w.nodeID,
			Datacenter:  cfg.Datacenter,
			Version:     Version,
			Revision:    revision,
			Server:      cfg.Server,
			BindAddr:    w.advertise,
			SerfLANPort: w.ml.LocalMember().Port,
			HTTPPort:    w.httpPort,
			DNSPort:     w.dnsPort,
			ServerPort:  serverPort,
			Stats:       w.infoStats,

			ClientAddr:         cfg.ClientAddr,
			NodeMeta:           nodeMeta(cfg),
			BootstrapExpect:    cfg.BootstrapExpect,
			EnableScriptChecks: cfg.EnableScriptChecks,
		},
		Logger: w.log,
		Ops:    w.ops(),
	})
	if err != nil {
		return part{}, fmt.Errorf("build the HTTP API: %w", err)
	}
	ln, httpsLn := w.httpLn, w.httpsLn
	return part{"HTTP API", func(ctx context.Context) error {
		if ln == nil && httpsLn == nil {
			<-ctx.Done()
			return nil
		}
		reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
		defer cancelRequests()
		srv := &http.Server{
			Handler:           ui.Handler(withBodyTimeout(finishWritesOnStop(handler, reqCtx), bodyReadTimeout)), // the web view at /ui/, beside /v1
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return reqCtx },
			ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
		}
		// HTTP/2 without TLS (h2c) besides HTTP/1.1: a watcher with many
		// blocking queries (cairn template) multiplexes them over one
		// connection instead of one socket per query.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.Protocols.SetHTTP2(true) // over HTTPS, by ALPN
		srv.RegisterOnShutdown(cancelRequests)
		served := make(chan error, 2)
		serving := 0
		for _, l := range []net.Listener{ln, httpsLn} {
			if l == nil {
				continue
			}
			serving++
			limited := limitConnsPerClient(l, cfg.Limits.HTTPMaxConnsPerClient)
			if l == httpsLn {
				// HTTPS: the same API; each handshake takes the current
				// certificate (reload swaps it), HTTP/2 by ALPN.
				limited = tls.NewListener(limited, w.tls.HTTPS())
			}
			go func() {
				if err := srv.Serve(limited); !errors.Is(err, http.ErrServerClosed) {
					served <- fmt.Errorf("serve on %s: %w", l.Addr(), err)
					return
				}
				served <- http.ErrServerClosed
			}()
		}
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			w.log.Warn("HTTP API: requests still running after the shutdown timeout; closing them", "timeout", cfg.ShutdownTimeout)
			srv.Close()
		}
		var errs []error
		for range serving {
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}}, nil
}
