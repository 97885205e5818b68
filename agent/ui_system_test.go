//go:build system

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemWebView drives the web view in headless Chromium (the Debian
// package): the pages load from GET /, a service the test registers
// appears on the open page without a reload (blocking queries), an
// instance's check output shows, and a KV edit made in the page reaches
// the store. Screenshots of each step are kept as test artifacts
// (go test -artifacts; make test-system keeps them in test-artifacts/).
func TestSystemWebView(t *testing.T) {
	chromium := systemtest.NeedCommand(t, "chromium")
	r := start(t, devConfig())
	base := "http://" + r.HTTPAddr().String()
	if _, err := r.client.KV().Put(&api.KVPair{Key: "app/config/color", Value: []byte("blue")}, nil); err != nil {
		t.Fatal(err)
	}

	ctx, shot := openWebView(t, chromium, base)
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	// A click on a row of a live table, found and clicked in one step
	// in the page: blocking queries redraw the table, so a node looked
	// up first may be gone by the time it is clicked.
	clickLive := func(sel string) chromedp.Action[chromedp.Void] {
		return poll(`(() => { const e = document.querySelector(` + strconv.Quote(sel) + `); if (!e) return false; e.click(); return true })()`)
	}

	// The services page loads from the root, through the redirect.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`#nav-services.active`)), shot("1-services-empty")); err != nil {
		t.Fatal(err)
	}
	location, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || location != base+"/ui/" {
		t.Errorf("GET / landed on %s (%v), want %s/ui/", location, err, base)
	}

	// A service registered now appears on the open page.
	if err := r.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web1", Name: "web", Address: "10.0.0.7", Port: 8080, Tags: []string{"v2"},
		Check: &api.AgentServiceCheck{CheckID: "web1-ttl", Name: "web ttl", TTL: "10m"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.client.Agent().UpdateTTL("web1-ttl", "serving 200 OK", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(css(`tr[data-service="web"]`)),
		poll(`document.querySelector('tr[data-service="web"]').textContent.includes("1 passing")`),
		shot("2-services-live"),
	); err != nil {
		t.Fatalf("the registered service did not appear without a reload: %v", err)
	}

	// The service's page shows the instance and its check output.
	if err := chromedp.Do(ctx,
		clickLive(`tr[data-service="web"] a`),
		chromedp.WaitVisible(css(`tr[data-instance="web1"]`)),
		shot("3-service-instances"),
	); err != nil {
		t.Fatal(err)
	}
	instanceText, err := chromedp.Run(ctx, chromedp.Text(css(`tr[data-instance="web1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0.0.7:8080", "v2", "passing", "serving 200 OK"} {
		if !strings.Contains(instanceText, want) {
			t.Errorf("instance row %q lacks %q", instanceText, want)
		}
	}

	// KV: browse to the key, edit it, save; the store has the new value.
	if err := chromedp.Do(ctx,
		chromedp.Click(css(`#nav-kv`)),
		chromedp.WaitVisible(css(`tr[data-key="app/"]`)),
		chromedp.Click(css(`tr[data-key="app/"] a`)),
		chromedp.WaitVisible(css(`tr[data-key="app/config/"]`)),
		chromedp.Click(css(`tr[data-key="app/config/"] a`)),
		chromedp.WaitVisible(css(`tr[data-key="app/config/color"]`)),
		chromedp.Click(css(`tr[data-key="app/config/color"] a`)),
		chromedp.WaitVisible(css(`#kv-value`)),
		poll(`document.querySelector('#kv-value').value === "blue"`),
		chromedp.SetValue(css(`#kv-value`), "green"),
		chromedp.Click(css(`#kv-save`)),
		poll(`document.querySelector('#status').textContent.startsWith("saved")`),
		shot("4-kv-edit"),
	); err != nil {
		t.Fatalf("KV edit in the page: %v", err)
	}
	p, _, err := r.client.KV().Get("app/config/color", nil)
	if err != nil || p == nil || string(p.Value) != "green" {
		t.Errorf("app/config/color after the edit in the page = %+v, %v; want green", p, err)
	}

	// Nodes and the agent page load.
	if err := chromedp.Do(ctx,
		chromedp.Click(css(`#nav-nodes`)),
		chromedp.WaitVisible(css(`tr[data-node]`)),
		shot("5-nodes"),
		chromedp.Click(css(`#nav-agent`)),
		chromedp.WaitVisible(css(`h3`)),
		shot("6-agent"),
	); err != nil {
		t.Fatal(err)
	}
}

// openWebView starts headless Chromium on base+"/" and returns the
// context the test's steps run in (bounded) and a step that keeps a
// screenshot as a test artifact.
func openWebView(t *testing.T, chromium, base string) (context.Context, func(name string) chromedp.Action[chromedp.Void]) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs the tests as root
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)

	artifacts := t.ArtifactDir()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(artifacts, name+".png"), png, 0o644)
		})
	}
	// The first run starts the browser, whose life is that context's:
	// no timeout on it; the steps after run under one.
	if err := chromedp.Do(browser, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("load %s/: %v", base, err)
	}
	ctx, cancelTimeout := context.WithTimeout(browser, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx, shot
}

// TestSystemWebViewWithACLs: with ACLs on and default deny, the web view
// shows nothing of a service to the anonymous token, and shows it once
// the operator types a token that may read it into the page's token box.
func TestSystemWebViewWithACLs(t *testing.T) {
	chromium := systemtest.NeedCommand(t, "chromium")
	r := start(t, aclDevConfig(t))
	root := aclClient(t, r, "root")
	waitToken(t, root)
	if err := root.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web1", Name: "web", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	ctx, shot := openWebView(t, chromium, "http://"+r.HTTPAddr().String())
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`#nav-services.active`)), shot("acl-1-anonymous")); err != nil {
		t.Fatal(err)
	}
	anon, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('tr[data-service="web"]') !== null`))
	if err != nil {
		t.Fatal(err)
	}
	if anon {
		t.Error("the anonymous token sees service web under default deny")
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(css(`#token`), "root"),
		chromedp.Click(css(`#token-form button`)),
		chromedp.WaitVisible(css(`tr[data-service="web"]`)),
		shot("acl-2-with-token"),
	); err != nil {
		t.Fatalf("with the management token typed in, service web did not appear: %v", err)
	}
}
