package crdt

import (
	"context"
	"fmt"
	"log/slog"
)

// goLogger adapts slog to go-log's StandardLogger, which go-ds-crdt
// takes. go-ds-crdt reports harmless events (a head it could not fetch
// yet, a rebroadcast with no peers) at ERROR; they are logged at WARN.
type goLogger struct{ l *slog.Logger }

func (g goLogger) log(level slog.Level, args ...any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, fmt.Sprint(args...))
	}
}

func (g goLogger) logf(level slog.Level, format string, args ...any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (g goLogger) Debug(args ...any)                 { g.log(slog.LevelDebug, args...) }
func (g goLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args...) }
func (g goLogger) Info(args ...any)                  { g.log(slog.LevelDebug, args...) }
func (g goLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args...) }
func (g goLogger) Warn(args ...any)                  { g.log(slog.LevelWarn, args...) }
func (g goLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args...) }
func (g goLogger) Error(args ...any)                 { g.log(slog.LevelWarn, args...) }
func (g goLogger) Errorf(format string, args ...any) { g.logf(slog.LevelWarn, format, args...) }

// Fatal and Panic are never called by go-ds-crdt; they log at ERROR and
// panic rather than exit, since only cmd may end the process.
func (g goLogger) Fatal(args ...any) { g.log(slog.LevelError, args...); panic(fmt.Sprint(args...)) }
func (g goLogger) Fatalf(format string, args ...any) {
	g.logf(slog.LevelError, format, args...)
	panic(fmt.Sprintf(format, args...))
}
func (g goLogger) Panic(args ...any) { g.log(slog.LevelError, args...); panic(fmt.Sprint(args...)) }
func (g goLogger) Panicf(format string, args ...any) {
	g.logf(slog.LevelError, format, args...)
	panic(fmt.Sprintf(format, args...))
}
