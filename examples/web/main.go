// Command web is the examples' demo app: a static HTTP server that
// answers every request with "hello from <name>", the host (container)
// name unless -name says otherwise, so a client can see which instance a
// load balancer picked. The compose example builds it with
// CGO_ENABLED=0 into an image FROM scratch.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "Address to listen on.")
	name := flag.String("name", "", "Name to answer with; the host name by default.")
	flag.Parse()
	host := *name
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil {
			slog.Error("hostname", "err", err)
			os.Exit(1)
		}
	}
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", host)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	slog.Info("serving", "addr", *addr, "host", host)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
