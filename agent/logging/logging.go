// Package logging owns the agent's log output: a slog.Handler that
// writes the agent's stderr (slog's text, or slog's JSON with
// -log-json) and hands the same records to streaming readers
// (/v1/agent/monitor, `cairn monitor`, `cairn debug`), each with its own
// level and format: Consul's (hclog's) line "... [INFO]  msg: k=v" or
// its JSON form, which is what Consul's clients of the monitor expect.
// The level can change while the agent runs (a reload). It knows
// nothing of the agent.
package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LevelTrace is hclog's trace level, below debug; -log-level=trace.
const LevelTrace = slog.LevelDebug - 4

// ParseLevel reads Consul's log level names (trace, debug, info, warn,
// err/error), case-blind.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "err", "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q; use trace, debug, info, warn or err", s)
}

// Logs is the output side: the main writer and the streams. Safe for
// concurrent use.
type Logs struct {
	base     slog.Handler // the main output; nil: none
	levelVar slog.LevelVar

	mu     sync.Mutex
	level  slog.Level
	subs   map[*sub]struct{}
	minLvl atomic.Int64 // the lowest level any sink takes
}

type sub struct {
	level slog.Level
	json  bool
	ch    chan []byte
	drops atomic.Uint64
}

// New returns the log output writing records at level and above to out
// (hclog's text, or JSON); out nil writes nowhere but the streams.
func New(out io.Writer, level slog.Level, jsonFormat bool) *Logs {
	l := &Logs{level: level, subs: map[*sub]struct{}{}}
	l.levelVar.Set(level)
	if out != nil {
		opts := &slog.HandlerOptions{Level: &l.levelVar}
		if jsonFormat {
			l.base = slog.NewJSONHandler(out, opts)
		} else {
			l.base = slog.NewTextHandler(out, opts)
		}
	}
	l.recompute()
	return l
}

// Logger is a slog.Logger over these logs.
func (l *Logs) Logger() *slog.Logger { return slog.New(&handler{logs: l, base: l.base}) }

// SetLevel changes the level of the main output (a reload's
// log_level).
func (l *Logs) SetLevel(level slog.Level) {
	l.mu.Lock()
	l.level = level
	l.levelVar.Set(level)
	l.recompute()
	l.mu.Unlock()
}

// Level is the main output's level.
func (l *Logs) Level() slog.Level {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.level
}

// recompute sets minLvl; called with l.mu held.
func (l *Logs) recompute() {
	m := slog.Level(math.MaxInt32)
	if l.base != nil {
		m = l.level
	}
	for s := range l.subs {
		m = min(m, s.level)
	}
	l.minLvl.Store(int64(m))
}

// Subscribe streams every record at level or above, formatted as one
// line (no newline) of text or JSON, until cancel is called; cancel
// closes lines. A reader that falls more than 512 lines behind loses
// lines (counted by the returned dropped) rather than slow the agent.
func (l *Logs) Subscribe(level slog.Level, jsonFormat bool) (lines <-chan []byte, dropped func() uint64, cancel func()) {
	s := &sub{level: level, json: jsonFormat, ch: make(chan []byte, 512)}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.recompute()
	l.mu.Unlock()
	var once sync.Once
	return s.ch, s.drops.Load, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.subs, s)
			l.recompute()
			l.mu.Unlock()
			close(s.ch)
		})
	}
}

// handler is the slog.Handler: attributes added with WithAttrs and
// WithGroup are flattened to dotted keys when added, so each record is
// formatted once per format whatever the number of readers.
type handler struct {
	logs   *Logs
	base   slog.Handler // the main output's handler with the same attrs and groups; nil: none
	attrs  []slog.Attr  // flattened, keys qualified
	prefix string       // the open groups, "a.b."
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool {
	return int64(level) >= h.logs.minLvl.Load()
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), flatten(h.prefix, attrs)...)
	if h.base != nil {
		h2.base = h.base.WithAttrs(attrs)
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	if h.base != nil {
		h2.base = h.base.WithGroup(name)
	}
	return &h2
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.base != nil && h.base.Enabled(ctx, r.Level) {
		err = h.base.Handle(ctx, r)
	}
	h.logs.mu.Lock()
	n := len(h.logs.subs)
	h.logs.mu.Unlock()
	if n == 0 {
		return err
	}
	attrs := h.attrs
	if r.NumAttrs() > 0 {
		attrs = append([]slog.Attr(nil), attrs...)
		r.Attrs(func(a slog.Attr) bool {
			attrs = append(attrs, flatten(h.prefix, []slog.Attr{a})...)
			return true
		})
	}
	var text, js []byte
	format := func(jsonFormat bool) []byte {
		if jsonFormat {
			if js == nil {
				js = formatJSON(r, attrs)
			}
			return js
		}
		if text == nil {
			text = formatText(r, attrs)
		}
		return text
	}
	l := h.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs {
		if r.Level < s.level {
			continue
		}
		select {
		case s.ch <- format(s.json):
		default:
			s.drops.Add(1)
		}
	}
	return err
}

// flatten resolves values and turns groups into dotted keys; empty
// groups and empty attrs vanish, as slog's handlers drop them.
func flatten(prefix string, attrs []slog.Attr) []slog.Attr {
	var out []slog.Attr
	for _, a := range attrs {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			continue
		}
		if a.Value.Kind() == slog.KindGroup {
			p := prefix
			if a.Key != "" {
				p += a.Key + "."
			}
			out = append(out, flatten(p, a.Value.Group())...)
			continue
		}
		a.Key = prefix + a.Key
		out = append(out, a)
	}
	return out
}

// levelName is hclog's name of a level.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "TRACE"
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARN"
	}
	return "ERROR"
}

// formatText is hclog's line: "2026-01-02T15:04:05.000Z [INFO]  msg: k=v".
func formatText(r slog.Record, attrs []slog.Attr) []byte {
	var b bytes.Buffer
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteString(t.Format("2006-01-02T15:04:05.000Z07:00"))
	lvl := levelName(r.Level)
	b.WriteString(" [" + lvl + "] ")
	b.WriteString(strings.Repeat(" ", 5-len(lvl)))
	b.WriteString(r.Message)
	if len(attrs) > 0 {
		b.WriteByte(':')
	}
	for _, a := range attrs {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteByte('=')
		b.WriteString(textValue(a.Value))
	}
	return b.Bytes()
}

func textValue(v slog.Value) string {
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			s = err.Error()
		} else {
			s = fmt.Sprint(v.Any())
		}
	default:
		s = v.String()
	}
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}

// formatJSON is hclog's JSON line: @timestamp, @level, @message, then
// the attributes.
func formatJSON(r slog.Record, attrs []slog.Attr) []byte {
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	m := make(map[string]any, len(attrs)+3)
	for _, a := range attrs {
		switch a.Value.Kind() {
		case slog.KindAny:
			if err, ok := a.Value.Any().(error); ok {
				m[a.Key] = err.Error()
				continue
			}
			m[a.Key] = a.Value.Any()
		case slog.KindDuration:
			m[a.Key] = a.Value.Duration().String()
		default:
			m[a.Key] = a.Value.Any()
		}
	}
	m["@timestamp"] = t.Format("2006-01-02T15:04:05.000000Z07:00")
	m["@level"] = strings.ToLower(levelName(r.Level))
	m["@message"] = r.Message
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"@timestamp": m["@timestamp"].(string), "@level": m["@level"].(string), "@message": r.Message, "@error": "attributes: " + err.Error()})
	}
	return b
}

// Of returns the output a logger made by Logs.Logger writes to, so
// the agent can stream its own log (nil for other handlers).
func Of(l *slog.Logger) *Logs {
	if h, ok := l.Handler().(*handler); ok {
		return h.logs
	}
	return nil
}
