package checks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/checks"
)

// printSink prints what the runner reports; the catalog records it
// instead.
type printSink struct{ results chan<- string }

func (s printSink) UpdateCheck(id string, status checks.Status, output string) {
	s.results <- fmt.Sprintf("%s is %s: %s", id, status, output)
}

func (s printSink) DeregisterService(serviceID string) {
	s.results <- "deregister " + serviceID
}

// An HTTP check of a service, run until the agent stops.
func Example() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer web.Close()

	results := make(chan string, 10)
	cfg := checks.DefaultConfig()
	cfg.Sink = printSink{results}
	cfg.DisableStagger = true // run it at once, not somewhere in the first 10s
	r, err := checks.New(cfg)
	if err != nil {
		panic(err)
	}
	err = r.Add(checks.Definition{ID: "web-http", ServiceID: "web", HTTP: web.URL + "/health", Interval: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	fmt.Println(strings.Replace(<-results, web.URL, "http://127.0.0.1:8080", 1))
	stop()
	fmt.Println("Run returned", <-done)
	// Output:
	// web-http is passing: HTTP GET http://127.0.0.1:8080/health: 200 OK Output: ok
	// Run returned <nil>
}

// A TTL check: the application reports its own health, through
// /v1/agent/check/pass and friends.
func ExampleRunner_TTL() {
	results := make(chan string, 10)
	cfg := checks.DefaultConfig()
	cfg.Sink = printSink{results}
	r, err := checks.New(cfg)
	if err != nil {
		panic(err)
	}
	if err := r.Add(checks.Definition{ID: "web-alive", ServiceID: "web", TTL: 30 * time.Second}); err != nil {
		panic(err)
	}
	r.TTL("web-alive", checks.Passing, "serving")
	r.TTL("web-alive", checks.Passing, "serving") // no change: not reported
	r.TTL("web-alive", checks.Warning, "queue is long")
	fmt.Println(r.TTL("web-http", checks.Passing, ""))
	close(results)
	for line := range results {
		fmt.Println(line)
	}
	// Output:
	// unknown check ID "web-http"; ensure that the check ID is passed, not the check name
	// web-alive is passing: serving
	// web-alive is warning: queue is long
}
