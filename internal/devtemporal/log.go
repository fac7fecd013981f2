package devtemporal

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// serverLogger adapts a *slog.Logger to the Temporal server's log.Logger.
// (The server's own log.NewSlogLogger goes the other way.)
type serverLogger struct {
	l *slog.Logger
}

var (
	_ log.Logger     = serverLogger{}
	_ log.WithLogger = serverLogger{}
)

func newServerLogger(l *slog.Logger) serverLogger { return serverLogger{l: l} }

func (s serverLogger) Debug(msg string, tags ...tag.Tag) { s.log(slog.LevelDebug, msg, tags) }
func (s serverLogger) Info(msg string, tags ...tag.Tag)  { s.log(slog.LevelInfo, msg, tags) }
func (s serverLogger) Warn(msg string, tags ...tag.Tag)  { s.log(slog.LevelWarn, msg, tags) }
func (s serverLogger) Error(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// DPanic panics only in zap's development mode; here it is an error.
func (s serverLogger) DPanic(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// Panic logs and panics, as the server expects.
func (s serverLogger) Panic(msg string, tags ...tag.Tag) {
	s.log(slog.LevelError, msg, tags)
	panic(msg)
}

// Fatal logs and exits the process, as the server expects (it calls Fatal
// when, e.g., a listener cannot be opened; Start checks ports first).
func (s serverLogger) Fatal(msg string, tags ...tag.Tag) {
	s.log(slog.LevelError, msg, tags)
	os.Exit(1)
}

// With returns a logger that adds tags to every record.
func (s serverLogger) With(tags ...tag.Tag) log.Logger {
	if len(tags) == 0 {
		return s
	}
	return serverLogger{l: s.l.With(tagArgs(tags)...)}
}

func (s serverLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return // skip rendering the tags
	}
	s.l.Log(ctx, level, msg, tagArgs(tags)...)
}

func tagArgs(tags []tag.Tag) []any {
	args := make([]any, 0, len(tags))
	for _, t := range tags {
		args = append(args, slog.Any(t.Key(), t.Value()))
	}
	return args
}

// levelHandler drops records below min before they reach h.
type levelHandler struct {
	h   slog.Handler
	min slog.Leveler
}

func (h *levelHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= h.min.Level() && h.h.Enabled(ctx, level)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.h.Handle(ctx, r)
}

func (h *levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelHandler{h: h.h.WithAttrs(attrs), min: h.min}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{h: h.h.WithGroup(name), min: h.min}
}

// stopLeveler is the server's log level: base until mute is called, then
// above every level. Stopping the server logs a burst of expected dial and
// poll errors from its internal workers; muting keeps them off the console.
type stopLeveler struct {
	base  slog.Leveler
	muted atomic.Bool
}

func (l *stopLeveler) Level() slog.Level {
	if l.muted.Load() {
		return slog.LevelError + 100
	}
	return l.base.Level()
}

func (l *stopLeveler) mute() { l.muted.Store(true) }
