//go:build !unix

package agent

// diskInfo is not read on this platform.
func diskInfo(string) map[string]any { return nil }
