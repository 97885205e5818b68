package checks

import "fmt"

// tail is an io.Writer that keeps the last max bytes written to it (and
// counts them all), like the armon/circbuf buffer Consul uses for check
// output: of a long output, the end is what says why it failed.
type tail struct {
	buf   []byte
	max   int
	total int64
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return len(p), nil
}

// Bytes is what is kept: the last max bytes written.
func (t *tail) Bytes() []byte { return t.buf }

// String is what is kept, after Consul's "Captured 4096 of 5000
// bytes\n...\n" when some was dropped (for script output).
func (t *tail) String() string {
	if t.total > int64(len(t.buf)) {
		return fmt.Sprintf("Captured %d of %d bytes\n...\n%s", len(t.buf), t.total, t.buf)
	}
	return string(t.buf)
}

// truncateNote cuts a TTL update's output to its first max bytes, the
// way Consul's CheckTTL.SetStatus does.
func truncateNote(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s ... (captured %d of %d bytes)", s[:max], max, len(s))
}
