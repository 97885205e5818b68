package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/servers"
	"github.com/cairn-dev/cairn/kv"
)

// storeParts opens the Raft store on servers and returns its parts: the
// store itself, the server port (Raft and forwarded requests on one
// listener) and the server manager (bootstrap-expect, voters). The
// router that answers KV requests locally or forwards them is made here
// too, for clients as well.
func (w *wiring) storeParts() ([]part, error) {
	cfg := w.cfg
	w.pool = forward.NewPool(5 * time.Second)
	w.pool.UseTLS(w.tls)
	w.onClose(func() error { w.pool.Close(); return nil })
	if !cfg.Server {
		return nil, nil
	}
	mux, err := forward.Listen(net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.Server)), w.advertise, w.log)
	if err != nil {
		return nil, err
	}
	w.mux = mux
	mux.UseTLS(w.tls)
	w.onClose(func() error { mux.Close(); return nil })
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  mux.RaftLayer(),
		MaxPool: 3,
		Timeout: 10 * time.Second,
	})
	store, err := kv.Open(kv.Config{
		NodeID:    w.nodeID,
		NodeName:  cfg.NodeName,
		DataDir:   w.dataDir,
		Transport: trans,
		Bootstrap: cfg.Dev || cfg.BootstrapExpect == 1,
		Fast:      w.fast,
		LogStore:  cfg.RaftLogStore,
		Logger:    w.log,
		OnCommit:  w.tel.onCommit(),

		MaxBlockingQueries: cfg.Limits.MaxBlockingQueries,
	})
	if err != nil {
		trans.Close()
		return nil, err
	}
	w.store = store
	// Shutdown is idempotent: this one matters only when Run never got
	// to run the store.
	w.onClose(func() error { store.Shutdown(); return nil })

	serveRPC, err := forward.ServeConn(w.routerFor())
	if err != nil {
		return nil, err
	}
	return []part{
		{"kv store", func(ctx context.Context) error {
			err := store.Run(ctx)
			if err == nil && ctx.Err() == nil {
				err = errors.New("stopped on its own")
			}
			return err
		}},
		{"server port", func(ctx context.Context) error {
			served := make(chan error, 1)
			go func() { served <- mux.Serve(serveRPC) }()
			select {
			case err := <-served:
				return fmt.Errorf("stopped serving: %w", err)
			case <-ctx.Done():
			}
			// Forwarded calls end once the store has stopped.
			<-store.Done()
			mux.Close()
			<-served
			return nil
		}},
		{"server manager", func(ctx context.Context) error {
			mgr, err := servers.New(servers.Config{
				BootstrapExpect:     w.agent.bootstrapExpect(),
				FailedServerTimeout: cfg.ReconnectTimeout,
				Logger:              w.log,
			}, w.members, store, func(ctx context.Context, addr string) (bool, error) {
				_, voters, err := w.pool.ServerStatus(ctx, addr)
				return len(voters) > 0, err
			})
			if err != nil {
				return err
			}
			return mgr.Run(ctx)
		}},
	}, nil
}

// routerFor returns the router, making it on first use: it needs the
// store (nil on clients) and, for the server list, membership, which it
// reads only when a request comes.
func (w *wiring) routerFor() *forward.Router {
	if w.router == nil {
		w.router = forward.NewRouter(w.store, func() []string {
			if w.members == nil {
				return nil
			}
			return w.members.serverAddrs()
		}, w.pool, forward.HoldTimeout(w.cfg.RPCHoldTimeout), forward.NodeExists(w.nodeExists),
			// ACLs (nil resolver: off). The agent's own forwarded
			// requests carry the agent token.
			forward.ACL(func() acl.Resolver {
				if st := w.acls; st != nil {
					return st.resolver
				}
				return nil
			}), forward.AgentToken(w.agentToken),
			forward.InitialManagement(w.cfg.ACL.InitialManagement), forward.Logger(w.log),
			forward.KeyListPolicy(w.cfg.ACL.EnableKeyListPolicy))
	}
	return w.router
}

// nodeExists reports whether node is in the catalog (which every agent
// holds whole): a session may only belong to a node whose failure can
// end it. Before the catalog opens, every node is taken on trust.
func (w *wiring) nodeExists(node string) bool {
	if w.cat == nil {
		return true
	}
	_, n, _ := w.cat.Node(nil, node)
	return n != nil
}

// diskStats is the data dir's disk condition for /v1/agent/self
// (Stats.disk): "ok", or the condition (disk full, read-only file
// system, I/O error) with since when and the error; nil on a client.
func (w *wiring) diskStats() map[string]string {
	if w.store == nil {
		return nil
	}
	c := w.store.DiskCondition()
	if c == nil {
		return map[string]string{"condition": "ok"}
	}
	return map[string]string{"condition": c.Kind, "since": c.Since.UTC().Format(time.RFC3339), "error": c.Error}
}

// agentToken is the token the agent's own forwarded requests carry:
// Consul's acl.tokens.agent, else acl.tokens.default, else none.
func (w *wiring) agentToken() string {
	st := w.acls
	if st == nil {
		return ""
	}
	if t := st.tokens.Get(acl.KindAgent); t != "" {
		return t
	}
	return st.tokens.Get(acl.KindDefault)
}
