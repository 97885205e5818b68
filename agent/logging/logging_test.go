package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// stamp hides the time, the one part of a line that changes.
var stamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) `)

func TestStreamFormats(t *testing.T) {
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		text string // hclog's line, after the time stamp
		json map[string]any
	}{
		{"plain", func(l *slog.Logger) { l.Info("agent started") }, "[INFO]  agent started",
			map[string]any{"@level": "info", "@message": "agent started"}},
		{"attrs", func(l *slog.Logger) { l.Warn("check failed", "check", "web", "output", "HTTP 503: down") }, `[WARN]  check failed: check=web output="HTTP 503: down"`,
			map[string]any{"@level": "warn", "@message": "check failed", "check": "web", "output": "HTTP 503: down"}},
		{"with and groups", func(l *slog.Logger) {
			l.With("part", "dns").WithGroup("q").Debug("answered", "rcode", 0, slog.Group("from", "ip", "127.0.0.1"))
		}, "[DEBUG] answered: part=dns q.rcode=0 q.from.ip=127.0.0.1",
			map[string]any{"@level": "debug", "@message": "answered", "part": "dns", "q.rcode": float64(0), "q.from.ip": "127.0.0.1"}},
		{"error value", func(l *slog.Logger) { l.Error("raft", "err", errors.New("no leader")) }, `[ERROR] raft: err="no leader"`,
			map[string]any{"@level": "error", "@message": "raft", "err": "no leader"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := New(nil, slog.LevelInfo, false)
			text, _, cancelText := logs.Subscribe(slog.LevelDebug, false)
			js, _, cancelJSON := logs.Subscribe(slog.LevelDebug, true)
			tt.log(logs.Logger())
			cancelText()
			cancelJSON()
			line := string(<-text)
			if !stamp.MatchString(line) || stamp.ReplaceAllString(line, "") != tt.text {
				t.Errorf("text line = %q, want <time> %q", line, tt.text)
			}
			var got map[string]any
			if err := json.Unmarshal(<-js, &got); err != nil {
				t.Fatal(err)
			}
			if got["@timestamp"] == nil {
				t.Errorf("JSON line has no @timestamp: %v", got)
			}
			delete(got, "@timestamp")
			if len(got) != len(tt.json) {
				t.Errorf("JSON line = %v, want %v", got, tt.json)
			}
			for k, v := range tt.json {
				if got[k] != v {
					t.Errorf("JSON %s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

// TestLevels: the main output keeps its level, which SetLevel changes;
// each stream has its own.
func TestLevels(t *testing.T) {
	var out bytes.Buffer
	logs := New(&out, slog.LevelInfo, false)
	log := logs.Logger().With("part", "x")
	warnOnly, _, cancel := logs.Subscribe(slog.LevelWarn, false)
	log.Debug("hidden")
	log.Info("shown")
	log.Warn("both")
	if got := out.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `level=INFO msg=shown part=x`) || !strings.Contains(got, "level=WARN msg=both") {
		t.Errorf("main output at info =\n%s", got)
	}
	logs.SetLevel(slog.LevelDebug)
	log.Debug("now shown")
	if !strings.Contains(out.String(), "level=DEBUG msg=\"now shown\"") {
		t.Errorf("main output after SetLevel(debug) lacks the debug line:\n%s", out.String())
	}
	cancel()
	var lines []string
	for l := range warnOnly {
		lines = append(lines, string(l))
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "[WARN]  both") {
		t.Errorf("warn stream = %q, want the one warning", lines)
	}
}

// TestSlowReaderDrops: a stream that is not read loses lines instead of
// blocking the logger.
func TestSlowReaderDrops(t *testing.T) {
	logs := New(nil, slog.LevelInfo, true)
	_, dropped, cancel := logs.Subscribe(slog.LevelInfo, true)
	defer cancel()
	for range 600 {
		logs.Logger().Info("x")
	}
	if d := dropped(); d != 600-512 {
		t.Errorf("dropped = %d, want %d", d, 600-512)
	}
}

func TestJSONMainOutput(t *testing.T) {
	var out bytes.Buffer
	New(&out, slog.LevelInfo, true).Logger().Info("hi", "k", "v")
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || m["msg"] != "hi" || m["k"] != "v" {
		t.Errorf("-log-json line = %s (%v)", out.String(), err)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"trace": LevelTrace, "DEBUG": slog.LevelDebug, "": slog.LevelInfo, "warn": slog.LevelWarn, "err": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("ParseLevel(loud) = %v, want an error naming it", err)
	}
}
