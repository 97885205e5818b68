//go:build system && linux

// Package nginx is the nginx example (upstream.ctmpl, nginx.conf,
// nginx.sh, template.hcl); its test runs the README.
package nginx

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/examples"
	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemExampleNginx runs the README's blocks as written (fixed
// ports 8500 and 8080) in a network namespace of its own: a dev agent,
// two app instances, cairn template rendering nginx's upstream with
// "nginx -t" as the check, then one instance taken away.
func TestSystemExampleNginx(t *testing.T) {
	systemtest.NeedRoot(t) // the network namespace
	for _, c := range []string{"nginx", "curl", "ip", "go"} {
		systemtest.NeedCommand(t, c)
	}
	out := examples.RunREADME(t, "README.md", examples.RunOptions{NetNS: true, Timeout: 10 * time.Minute})
	for _, want := range []string{"hello from one", "hello from two", "server 127.0.0.1:9001; # web-9001"} {
		if !strings.Contains(out, want) {
			t.Errorf("the README's output lacks %q:\n%s", want, out)
		}
	}
}
