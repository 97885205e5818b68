//go:build !unix

package agent

// lockDataDir does not lock on systems without flock.
func lockDataDir(string) (func(), error) { return func() {}, nil }
