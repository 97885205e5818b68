package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger gives memberlist, which logs through the standard log
// package, a *log.Logger of its own that forwards each line to slog, so
// nothing reaches the global log output.
//
// memberlist tags its lines "[DEBUG]", "[INFO]", "[WARN]", "[ERR]" (and
// sometimes "[ERROR]"). Its INFO lines are protocol chatter, so everything
// but warnings and errors becomes Debug.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(memberlistLogWriter{log: l.With("component", "memberlist")}, "", 0)
}

type memberlistLogWriter struct{ log *slog.Logger }

// Some memberlist warnings and errors drop to Debug:
//   - restatedConflict starts its error for a node name claimed at two
//     addresses; NotifyConflict reports that with what to do, so it is not
//     logged twice;
//   - closedConn is what its goroutines hit when Shutdown closes the
//     sockets under them: expected, not an error.
const (
	restatedConflict = "Conflicting address for"
	closedConn       = "use of closed network connection"
)

func (w memberlistLogWriter) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(p))
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelDebug
	if tag, rest, ok := strings.Cut(line, "] "); ok && strings.HasPrefix(tag, "[") {
		switch tag[1:] {
		case "WARN":
			level = slog.LevelWarn
		case "ERR", "ERROR":
			level = slog.LevelError
		}
		line = rest
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if strings.HasPrefix(line, restatedConflict) || strings.Contains(line, closedConn) {
		level = slog.LevelDebug
	}
	return level, line
}
