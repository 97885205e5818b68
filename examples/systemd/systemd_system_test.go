//go:build system && linux

package systemd

import (
	"testing"

	"github.com/cairn-dev/cairn/examples"
	"github.com/cairn-dev/cairn/systemtest"
)

// TestSystemExampleSystemd runs the README's tested block.
func TestSystemExampleSystemd(t *testing.T) {
	systemtest.NeedCommand(t, "go")
	examples.RunREADME(t, "README.md", examples.RunOptions{})
}
