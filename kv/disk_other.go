//go:build !linux

package kv

// fsState cannot tell elsewhere; the stores' own errors still do.
func fsState(string) (string, uint64, bool) { return "", 0, false }
