// Command barekv is the baseline for KV read benchmarks: a bare net/http
// server that answers every GET with the same bytes and headers cairn
// sends for a 128-byte key, and does nothing else. Load both with the same
// client, side by side, and report cairn's rate as a ratio of this one's.
//
//	barekv -addr 127.0.0.1:18501 -body "$(curl -s 127.0.0.1:8500/v1/kv/bench/key)"
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18501", "listen address (loopback only)")
	body := flag.String("body", `[{"LockIndex":0,"Key":"bench/key","Flags":0,"Value":"dmFsdWU=","CreateIndex":5,"ModifyIndex":5}]`, "the JSON body to answer")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "barekv: -addr %q must be a loopback host:port\n", *addr)
		os.Exit(2)
	}
	b := []byte(*body)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Consul-Index", "5")
		w.Header().Set("X-Consul-Knownleader", "true")
		w.Header().Set("X-Consul-Lastcontact", "0")
		w.Header().Set("X-Consul-Effective-Consistency", "leader")
		w.Write(b)
	})
	if err := http.ListenAndServe(*addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "barekv:", err)
		os.Exit(1)
	}
}
