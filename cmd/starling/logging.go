package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"

	"github.com/starling-sync/starling/node"
)

// parseLevel maps a --log-level value to a slog level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if !slices.Contains(node.LogLevels, strings.ToLower(s)) || l.UnmarshalText([]byte(s)) != nil {
		return 0, fmt.Errorf("--log-level %q: use one of %s", s, strings.Join(node.LogLevels, ", "))
	}
	return l, nil
}

// logFormats are the values of --log-format.
var logFormats = []string{"text", "json"}

// parseFormat checks a --log-format value.
func parseFormat(s string) (string, error) {
	f := strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(logFormats, f) {
		return "", fmt.Errorf("--log-format %q: use text or json", s)
	}
	return f, nil
}

// newLogger returns the process's logger: logfmt-style text or one JSON
// object per line (format, from parseFormat) to w, at the level held by
// lv (so `run` can raise it after reading the config).
func newLogger(w io.Writer, lv *slog.LevelVar, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// libLogLevels are go-log's levels unless GOLOG_LOG_LEVEL says otherwise:
// libp2p and boxo log routine network trouble at ERROR, and go-ds-crdt
// logs harmless events (a head already processed, a peer gone) at ERROR,
// so both are kept quiet by default.
var libLogLevels = [][2]string{
	{"*", "error"}, // first: it resets every logger
	{"crdt", "fatal"},
}

var bridgeMu sync.Mutex

// bridgeGoLog sends the logs of go-log (go-ds-crdt, boxo, kad-dht) and of
// go-libp2p's slog shim to h, Starling's own handler, so there is one log
// stream with one format and one level filter. Called once per app run,
// before any node starts.
func bridgeGoLog(h slog.Handler) {
	bridgeMu.Lock()
	defer bridgeMu.Unlock()
	golog.SetPrimaryCore(&slogCore{h: h})
	gologshim.SetDefaultHandler(golog.SlogHandler())
	if os.Getenv("GOLOG_LOG_LEVEL") != "" {
		return // the user chose; go-log applied it at init
	}
	for _, nl := range libLogLevels {
		_ = golog.SetLogLevel(nl[0], nl[1])
	}
}

// slogCore is a zapcore.Core (go-log is built on zap) that writes to a
// slog.Handler.
type slogCore struct {
	h     slog.Handler
	attrs []slog.Attr
}

var _ zapcore.Core = (*slogCore)(nil)

func zapToSlog(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapToSlog(l))
}

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h, attrs: append(slices.Clip(c.attrs), fieldsToAttrs(fs)...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	r := slog.NewRecord(e.Time, zapToSlog(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(c.attrs...)
	r.AddAttrs(fieldsToAttrs(fs)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func fieldsToAttrs(fs []zapcore.Field) []slog.Attr {
	if len(fs) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	slices.SortFunc(out, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return out
}
