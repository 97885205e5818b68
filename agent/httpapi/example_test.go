package httpapi_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/consul/api"
)

// The handler serves Consul's API from a kv server; the official Consul
// client talks to it unchanged.
func ExampleNewHandler() {
	dir, err := os.MkdirTemp("", "cairn-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := kv.DefaultConfig("node-1", dir, "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	srv, err := kv.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitLeader(srv)

	h, err := httpapi.NewHandler(httpapi.Config{Store: srv, Self: httpapi.Self{NodeName: "node-1"}})
	if err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()

	client, err := api.NewClient(&api.Config{Address: ts.Listener.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "greeting", Value: []byte("hello")}, nil); err != nil {
		log.Fatal(err)
	}
	p, _, err := client.KV().Get("greeting", nil)
	if err != nil {
		log.Fatal(err)
	}
	name, err := client.Agent().NodeName()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(p.Value))
	fmt.Println(name)
	// Output:
	// hello
	// node-1
}

// waitLeader waits for srv to lead: on the leader channel, re-checking
// now and then in case a notification was dropped.
func waitLeader(srv *kv.Server) {
	deadline := time.After(10 * time.Second)
	for !srv.IsLeader() {
		select {
		case <-srv.Raft().LeaderCh():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			log.Fatal("kv server did not lead within 10s")
		}
	}
}
