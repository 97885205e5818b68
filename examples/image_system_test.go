//go:build system && linux

package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemImage builds the release binary for linux/amd64 and the
// top-level Dockerfile's image, then checks that the image runs as a
// non-root user and that its default command is a working single server.
func TestSystemImage(t *testing.T) {
	systemtest.NeedRoot(t) // the Docker socket
	systemtest.NeedCommand(t, "docker")
	systemtest.NeedCommand(t, "make")
	systemtest.Need(t, "a Docker engine that answers", exec.Command("docker", "info").Run())
	if out, err := exec.Command("make", "-C", "..", "release", "PLATFORMS=linux/amd64").CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	tag := fmt.Sprintf("cairn-imagetest:%d", os.Getpid())
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	docker("build", "-q", "-t", tag, "..")
	t.Cleanup(func() { exec.Command("docker", "rmi", tag).Run() })

	if user := strings.TrimSpace(docker("inspect", "-f", "{{.Config.User}}", tag)); user != "65532:65532" {
		t.Errorf("image user = %q, want 65532:65532", user)
	}
	var v struct{ Version, Platform string }
	if err := json.Unmarshal([]byte(docker("run", "--rm", tag, "version", "-json")), &v); err != nil || v.Platform != "linux/amd64" {
		t.Errorf("cairn version -json in the image = %+v, %v", v, err)
	}

	name := fmt.Sprintf("cairn-imagetest-%d", os.Getpid())
	docker("run", "-d", "--name", name, tag)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("docker", "exec", name, "/bin/cairn", "kv", "put", "image-test", "ok").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("the image's default server never took a write: %v\n%s\nlogs:\n%s", err, out, logs)
		}
		time.Sleep(500 * time.Millisecond) // poll: the container has no event to wait on
	}
}
