//go:build !unix

package template

import "os/exec"

// killGroup leaves the default: only the shell itself is killed.
func killGroup(*exec.Cmd) {}
