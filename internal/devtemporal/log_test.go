package devtemporal

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.temporal.io/server/common/log/tag"
)

func TestServerLogger(t *testing.T) {
	var buf bytes.Buffer
	level := &stopLeveler{base: slog.LevelWarn}
	base := slog.New(&levelHandler{h: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), min: level})
	l := newServerLogger(base).With(tag.NewStringTag("service", "history"))

	l.Info("below the level")
	l.Warn("shard lost", tag.NewInt32("shard-id", 1), tag.Error(errors.New("boom")))
	got := buf.String()
	if strings.Contains(got, "below the level") {
		t.Errorf("info record passed a warn level: %s", got)
	}
	for _, want := range []string{"level=WARN", `msg="shard lost"`, "service=history", "shard-id=1", "error=boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line lacks %s: %s", want, got)
		}
	}

	buf.Reset()
	level.mute()
	l.Error("while stopping")
	if buf.Len() != 0 {
		t.Errorf("muted logger wrote %s", buf.String())
	}
}
