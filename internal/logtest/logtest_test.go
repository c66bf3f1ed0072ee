package logtest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrent writes from several goroutines while reading; under
// -race a Buffer without its lock fails here.
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	log := b.Logger(slog.LevelInfo)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				log.Info("written", "k", "v")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), `msg=written k=v`); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}

func TestLoggerLevel(t *testing.T) {
	tests := []struct {
		level      slog.Level
		debug, inf bool
	}{
		{slog.LevelDebug, true, true},
		{slog.LevelInfo, false, true},
		{slog.LevelWarn, false, false},
	}
	for _, tt := range tests {
		var b Buffer
		log := b.Logger(tt.level)
		log.Debug("dbg")
		log.Info("inf")
		if got := strings.Contains(b.String(), "msg=dbg"); got != tt.debug {
			t.Errorf("level %v: debug logged %v, want %v", tt.level, got, tt.debug)
		}
		if got := strings.Contains(b.String(), "msg=inf"); got != tt.inf {
			t.Errorf("level %v: info logged %v, want %v", tt.level, got, tt.inf)
		}
	}
}
