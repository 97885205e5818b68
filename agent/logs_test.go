package agent

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/logging"
)

// capturedLog is an agent's log kept in memory at debug level, as the
// agent writes it to stderr (slog's text).
type capturedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capturedLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *capturedLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// logTo makes an agent log to c at debug level (startAgentWith's tweak).
func (c *capturedLog) logTo(a *Agent) {
	a.log = logging.New(c, slog.LevelDebug, false).Logger()
}

// TestRequestIDFollowsAForwardedWrite: a write taken by a client agent
// and served by the server carries one request ID, the caller's
// X-Request-ID, in both agents' logs and in the answer's header; a
// request without one gets a fresh ID back.
func TestRequestIDFollowsAForwardedWrite(t *testing.T) {
	var serverLog, clientLog capturedLog
	server := startAgentWith(t, clusterConfig(t, "s0", true, 1), serverLog.logTo)
	client := startAgentWith(t, clusterConfig(t, "c0", false, 0, server.SerfAddr()), clientLog.logTo)
	waitLeader(t, server.client)
	waitLeader(t, client.client)

	const id = "req-7f3a-forwarded"
	req, err := http.NewRequest(http.MethodPut, "http://"+client.HTTPAddr().String()+"/v1/kv/traced", strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-ID", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != id {
		t.Fatalf("PUT through the client = %d, X-Request-Id %q; want 200 and %q back", resp.StatusCode, resp.Header.Get("X-Request-Id"), id)
	}
	want := "request_id=" + id
	eventually(t, "the client logs the request under its ID", 5e9, func() (bool, string) {
		return strings.Contains(clientLog.String(), want), "no " + want
	})
	eventually(t, "the server logs the forwarded write under the same ID", 5e9, func() (bool, string) {
		for _, line := range strings.Split(serverLog.String(), "\n") {
			if strings.Contains(line, want) && strings.Contains(line, "method=apply") {
				return true, ""
			}
		}
		return false, "no forwarded apply with " + want
	})

	// No header, or one unfit to log: a fresh 16-hex-digit ID.
	for _, in := range []string{"", "bad id level=INFO msg=forged", strings.Repeat("x", 200)} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+client.HTTPAddr().String()+"/v1/kv/traced", nil)
		if in != "" {
			req.Header["X-Request-Id"] = []string{in}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "" {
			t.Errorf("X-Request-Id for an incoming %q = %q, want a new 16-hex-digit ID", in, got)
		}
	}
}

// TestLogsHoldNoSecrets runs an agent with a gossip key, ACL tokens in
// every place a client sends them, and KV values, at trace level, with
// requests that fail too; none of them appears in its log.
func TestLogsHoldNoSecrets(t *testing.T) {
	var log capturedLog
	cfg := devConfig()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	cfg.Encrypt = key
	r := startAgentWith(t, cfg, func(a *Agent) {
		a.log = logging.New(&log, logging.LevelTrace, false).Logger()
	})
	waitLeader(t, r.client)

	const (
		headerToken = "secret-header-token-6d1c"
		bearerToken = "secret-bearer-token-a93e"
		queryToken  = "secret-query-token-02bf"
		value       = "secret-kv-value-c4d8"
	)
	tokenClient, err := api.NewClient(&api.Config{Address: r.HTTPAddr().String(), Token: headerToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokenClient.KV().Put(&api.KVPair{Key: "app/password", Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokenClient.KV().Get("app/password", nil); err != nil {
		t.Fatal(err)
	}
	// A txn that fails (CAS on a wrong index) with the value in it, and a
	// request refused for bad input, so the error paths log too.
	if ok, _, _, err := tokenClient.Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "app/password", Value: []byte(value), Index: 1}}}, nil); err != nil || ok {
		t.Fatalf("failing txn = %v, %v; want it refused", ok, err)
	}
	for _, u := range []string{
		"/v1/kv/app/password?token=" + queryToken,
		"/v1/kv/app/password?index=bogus&token=" + queryToken,
		"/v1/agent/self?token=" + queryToken,
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.HTTPAddr().String()+u, nil)
		req.Header.Set("Authorization", "Bearer "+bearerToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	eventually(t, "the agent logs the requests", 5e9, func() (bool, string) {
		return strings.Contains(log.String(), "/v1/agent/self"), "no request line yet"
	})
	out := log.String()
	if !strings.Contains(out, "app/password") {
		t.Fatalf("the log does not mention the key written; the capture is broken:\n%s", out)
	}
	for name, secret := range map[string]string{
		"the -encrypt key": key, "the X-Consul-Token": headerToken, "the bearer token": bearerToken,
		"the ?token= token": queryToken, "the KV value": value,
		"the KV value in base64": base64.StdEncoding.EncodeToString([]byte(value)),
	} {
		if strings.Contains(out, secret) {
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, secret) {
					t.Errorf("the log holds %s: %s", name, line)
				}
			}
		}
	}
}
