package membership

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Handler that keeps what it receives and offers state for
// push/pull; got closes its changed channel on every arrival, so tests
// wait on it instead of sleeping.
type recorder struct {
	state []byte

	mu      sync.Mutex
	msgs    []string
	merged  []string
	changed chan struct{}
}

func newRecorder(state string) *recorder {
	return &recorder{state: []byte(state), changed: make(chan struct{})}
}

func (r *recorder) note(list *[]string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, string(b)) // copies: b belongs to memberlist
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) NotifyMsg(msg []byte)                   { r.note(&r.msgs, msg) }
func (r *recorder) LocalState(join bool) []byte            { return r.state }
func (r *recorder) MergeRemoteState(buf []byte, join bool) { r.note(&r.merged, buf) }

// waitFor blocks until cond holds for the recorded messages and states.
func (r *recorder) waitFor(t *testing.T, what string, cond func(msgs, merged []string) bool) {
	t.Helper()
	timeout := time.NewTimer(deadline)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.msgs, r.merged)
		ch, msgs, merged := r.changed, r.msgs, r.merged
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("%s: not within %v; messages %q, push/pull states %q", what, deadline, msgs, merged)
		}
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func TestChannelBroadcastSendAndPushPull(t *testing.T) {
	a := newMember(t, "a")
	b := newMember(t, "b")
	ra, rb := newRecorder("state of a"), newRecorder("state of b")
	cha, err := a.Register(FirstComponentKind, ra)
	if err != nil {
		t.Fatal(err)
	}
	chb, err := b.Register(FirstComponentKind, rb)
	if err != nil {
		t.Fatal(err)
	}
	// A second kind on b with nothing registered on a: a drops it.
	if _, err := b.Register(FirstComponentKind+1, newRecorder("other kind")); err != nil {
		t.Fatal(err)
	}

	// The join runs a push/pull: each side gets the other's state of its
	// own kind only.
	b.join(t, a)
	ra.waitFor(t, "a merges b's state", func(_, merged []string) bool { return contains(merged, "state of b") })
	rb.waitFor(t, "b merges a's state", func(_, merged []string) bool { return contains(merged, "state of a") })
	ra.mu.Lock()
	if contains(ra.merged, "other kind") {
		t.Errorf("a merged state of a kind it never registered: %q", ra.merged)
	}
	ra.mu.Unlock()

	if err := cha.Broadcast("k", []byte("hello from a")); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	rb.waitFor(t, "b receives a's broadcast", func(msgs, _ []string) bool { return contains(msgs, "hello from a") })

	big := bytes.Repeat([]byte("x"), 64*1024)
	if err := chb.Broadcast("k", big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Broadcast(64 KiB) = %v, want ErrTooLarge", err)
	}
	if err := chb.SendReliable("a", big); err != nil {
		t.Fatalf("SendReliable(a, 64 KiB): %v", err)
	}
	ra.waitFor(t, "a receives b's 64 KiB message", func(msgs, _ []string) bool { return contains(msgs, string(big)) })

	if err := chb.SendReliable("nobody", []byte("x")); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("SendReliable(nobody) = %v, want ErrUnknownMember", err)
	}
}

func TestRegisterRefusesTakenKinds(t *testing.T) {
	m := newMember(t, "a")
	if _, err := m.Register(FirstComponentKind, newRecorder("")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kind byte
		want string
	}{
		{"membership's own", msgForceLeave, fmt.Sprintf("register gossip kind 1: gossip message kind is taken: kinds below %d are membership's own; use %d or more", FirstComponentKind, FirstComponentKind)},
		{"registered twice", FirstComponentKind, fmt.Sprintf("register gossip kind %d: gossip message kind is taken by another component", FirstComponentKind)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Register(tt.kind, newRecorder(""))
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrKindTaken) {
				t.Errorf("Register(%d) = %v, want %q", tt.kind, err, tt.want)
			}
		})
	}
}

// TestMergeRemoteStateMalformed: push/pull bytes come from the network;
// garbage is dropped without a panic, and the well-formed parts before it
// are delivered.
func TestMergeRemoteStateMalformed(t *testing.T) {
	m := newMember(t, "a")
	r := newRecorder("")
	if _, err := m.Register(FirstComponentKind, r); err != nil {
		t.Fatal(err)
	}
	good := []byte{pushPullFormat, FirstComponentKind, 2, 'o', 'k'}
	for _, buf := range [][]byte{
		nil,
		{pushPullFormat},
		{99, 1, 2, 3},
		{pushPullFormat, FirstComponentKind},
		{pushPullFormat, FirstComponentKind, 0xff},
		{pushPullFormat, FirstComponentKind, 200, 'x'},
		append(append([]byte{}, good...), FirstComponentKind, 50, 'y'),
	} {
		m.mergeRemoteState(buf, false)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.Join(r.merged, ",") != "ok" {
		t.Errorf("merged = %q, want only [ok]", r.merged)
	}
}
