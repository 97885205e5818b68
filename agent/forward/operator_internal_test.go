package forward

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairn-dev/cairn/kv"
)

// TestRemovalMayHaveHappened: only a try that may have reached a leader
// committing the removal lets a later "not a peer" count as success; one
// that met no leader removed nothing (removing an unknown ID through a
// client during an election was answered 200).
func TestRemovalMayHaveHappened(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{kv.ErrNoLeader, false},
		{fmt.Errorf("%w: not the leader", kv.ErrNotLeader), false},
		{fmt.Errorf("%w: dial", ErrUnreachable), false},
		{fmt.Errorf("%w: bad id", kv.ErrInvalidRequest), false},
		{fmt.Errorf("%w: leadership lost while committing log", kv.ErrOutcomeUnknown), true},
		{fmt.Errorf("%w: EOF", ErrConnectionLost), true},
		{fmt.Errorf("%w: no answer within 2s", errAttemptTimeout), true},
		{errLeaderChanged, true},
		{errors.New("something else"), false},
	}
	for _, tc := range tests {
		if got := removalMayHaveHappened(tc.err); got != tc.want {
			t.Errorf("removalMayHaveHappened(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
