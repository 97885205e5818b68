package agent

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestHTTPSCheckSendsTLSServerName: a check registered through the HTTP
// API with TLSServerName probes with that name (SNI), end to end: HTTP
// API -> catalog -> check runner -> TLS handshake. The agent's adapter
// between the catalog's and the runner's definitions once dropped the
// field, so such checks probed with an empty SNI.
func TestHTTPSCheckSendsTLSServerName(t *testing.T) {
	sni := make(chan string, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sni <- r.TLS.ServerName:
		default:
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()

	a := start(t, devConfig())
	err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: "web", Port: 8443,
		Check: &api.AgentServiceCheck{HTTP: srv.URL + "/health", Interval: "1s",
			TLSServerName: "web.internal", TLSSkipVerify: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-sni:
		if got != "web.internal" {
			t.Errorf("the HTTPS check's probe sent SNI %q, want the registered TLSServerName web.internal", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the HTTPS check did not probe the server within 15s")
	}
}
