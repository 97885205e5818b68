package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// ImageRepo is the repository of the test image; the tag is a hash of the
// testserver binary, so an unchanged binary is never rebuilt.
const ImageRepo = "cairn-testserver"

// ServerPath is where the testserver binary sits in the image.
const ServerPath = "/testserver"

// serverPkg is the testserver's import path, built by BuildImage.
const serverPkg = "github.com/cairn-dev/cairn/registrator/dockertest/testserver"

// BuildImage returns the tag of the FROM scratch test image, building it
// only when the engine has no image for the current testserver binary. It
// compiles the testserver statically (CGO_ENABLED=0, -trimpath, so the
// same source gives the same binary and the same tag); the Go build cache
// makes that cheap after the first time. The image is kept for the next
// run: it is a few MB and identified by its content.
func (e *Engine) BuildImage() string {
	t := e.t
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("dockertest: building the test image needs the go command: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "testserver")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, serverPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dockertest: go build %s: %v\n%s", serverPkg, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	tag := ImageRepo + ":" + hex.EncodeToString(sum[:6])

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := e.Client.ImageInspect(ctx, tag); err == nil {
		return tag
	} else if !cerrdefs.IsNotFound(err) {
		t.Fatalf("dockertest: inspect image %s: %v", tag, err)
	}
	dockerfile := "FROM scratch\nCOPY testserver " + ServerPath + "\nENTRYPOINT [\"" + ServerPath + "\"]\n"
	buildCtx, err := tarball(map[string][]byte{"Dockerfile": []byte(dockerfile), "testserver": data})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Client.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{LabelRun + ".image": "testserver"},
	})
	if err != nil {
		t.Fatalf("dockertest: docker build %s: %v", tag, err)
	}
	defer res.Body.Close()
	if err := buildErr(res.Body); err != nil {
		t.Fatalf("dockertest: docker build %s: %v", tag, err)
	}
	t.Logf("dockertest: built %s", tag)
	return tag
}

// tarball is a build context holding files (mode 0755).
func tarball(files map[string][]byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}

// buildErr reads the build's JSON message stream to its end and returns
// the error it reports, with the last output lines.
func buildErr(r io.Reader) error {
	dec := json.NewDecoder(r)
	var tail []string
	for {
		var m struct {
			Stream      string
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the build output: %w", err)
		}
		if s := strings.TrimSpace(m.Stream); s != "" {
			tail = append(tail, s)
			if len(tail) > 5 {
				tail = tail[1:]
			}
		}
		if m.Error != "" || m.ErrorDetail.Message != "" {
			return fmt.Errorf("%s %s (last output: %s)", m.Error, m.ErrorDetail.Message, strings.Join(tail, " | "))
		}
	}
}
