package agent

import "runtime/debug"

// Version is cairn's release version, reported by `cairn version` and
// /v1/agent/self.
const Version = "0.1.0-dev"

// Revision returns the VCS revision the binary was built from (with
// "-dirty" when the tree had changes), and false when the build did not
// record one (go build -buildvcs=false, go run, tests).
func Revision() (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "", false
	}
	if dirty {
		rev += "-dirty"
	}
	return rev, true
}
