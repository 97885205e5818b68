//go:build !unix

package checks

import "os/exec"

// killProcessGroup leaves os/exec's default cancellation, which kills
// only the process itself: there are no process groups to kill here.
func killProcessGroup(cmd *exec.Cmd) {}
