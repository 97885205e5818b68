package httpapi_test

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// cutOffStore's writes wait until their context ends and fail with its
// error, as a write did while the agent stopped.
type cutOffStore struct {
	*kv.Server
	applying chan struct{}
}

func (s cutOffStore) Apply(ctx context.Context, _ kv.Op) (bool, error) {
	close(s.applying)
	<-ctx.Done()
	return false, ctx.Err()
}

// TestWriteCancelledByStoppingServerIsNotAnswered200: the agent's HTTP
// server cancels the requests still running when it stops. A CAS cut off
// that way must not come back as an answer: the handler used to return
// without writing one, net/http sent an empty 200, and Consul's client
// read it as a CAS that did not swap (or a put that was done), although
// the write may have been applied (TestLinearizableThroughLeaderChanges).
func TestWriteCancelledByStoppingServerIsNotAnswered200(t *testing.T) {
	t.Parallel()
	st := cutOffStore{kvtest.NewServer(t), make(chan struct{})}
	h, err := httpapi.NewHandler(httpapi.Config{Store: st, Self: testSelf()})
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, stopRequests := context.WithCancel(context.Background())
	defer stopRequests()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.BaseContext = func(net.Listener) context.Context { return reqCtx }
	ts.Start()
	t.Cleanup(ts.Close)
	go func() {
		<-st.applying
		stopRequests() // what the agent's HTTP server does on shutdown
	}()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Scheme = ts.Listener.Addr().String(), "http"
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := client.KV().CAS(&api.KVPair{Key: "k", Value: []byte("v"), ModifyIndex: 0}, nil)
	if err == nil {
		t.Fatalf("CAS cut off by the server stopping = %v, no error; want no answer (the write's outcome is unknown)", ok)
	}
}
