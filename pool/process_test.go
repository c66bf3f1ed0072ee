package pool

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", maxLineLen+100)
	in := "one\r\ntwo\n" + long + "\nafter\nlast-without-newline"
	br := bufio.NewReaderSize(strings.NewReader(in), maxLineLen)
	var got []string
	for {
		line, err := readLine(br)
		if line != "" {
			got = append(got, line)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	if len(got) != 5 {
		t.Fatalf("got %d lines, want 5: %.60q", len(got), got)
	}
	if got[0] != "one" || got[1] != "two" || got[3] != "after" || got[4] != "last-without-newline" {
		t.Errorf("lines = %.40q", got)
	}
	if !strings.HasSuffix(got[2], " [cut]") || len(got[2]) > maxLineLen+10 {
		t.Errorf("long line not cut: %d bytes", len(got[2]))
	}
}

func TestParseFPMLine(t *testing.T) {
	cases := []struct {
		in    string
		level slog.Level
		text  string
	}{
		{"[22-Nov-2026 20:16:16] NOTICE: fpm is running, pid 10331", slog.LevelInfo, "NOTICE: fpm is running, pid 10331"},
		{"[22-Nov-2026 20:16:16] WARNING: [pool r1] seems busy", slog.LevelWarn, "WARNING: [pool r1] seems busy"},
		{"[22-Nov-2026 20:16:16] ERROR: failed to open error_log", slog.LevelError, "ERROR: failed to open error_log"},
		{"[22-Nov-2026 20:16:16] ALERT: [pool r1] pm missing", slog.LevelError, "ALERT: [pool r1] pm missing"},
		{"[22-Nov-2026 20:16:16] DEBUG: x", slog.LevelDebug, "DEBUG: x"},
		{"raw worker output", slog.LevelInfo, "raw worker output"},
		{"[not a date but a long bracketed worker line that goes on] x", slog.LevelInfo, "[not a date but a long bracketed worker line that goes on] x"},
	}
	for _, tc := range cases {
		level, text := parseFPMLine(tc.in)
		if level != tc.level || text != tc.text {
			t.Errorf("parseFPMLine(%q) = %v %q, want %v %q", tc.in, level, text, tc.level, tc.text)
		}
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for i := 0; i < tailLines+5; i++ {
		tl.add(strconv.Itoa(i))
	}
	got := strings.Split(tl.String(), "; ")
	if len(got) != tailLines || got[0] != "5" || got[len(got)-1] != strconv.Itoa(tailLines+4) {
		t.Errorf("tail = %q", got)
	}
}

func TestGroupAliveIgnoresZombies(t *testing.T) {
	// A child we do not reap yet stays a zombie: its group is not alive.
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	cmd.SysProcAttr = newGroupAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	eventually(t, 10*time.Second, "child never became a zombie", func() bool {
		st, err := proc.ReadStat(pid)
		return err == nil && st.State == 'Z'
	})
	if groupAlive(pid) {
		t.Error("a group holding only a zombie counts as alive")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}

	sleeper := exec.Command("/bin/sh", "-c", "sleep 600")
	sleeper.SysProcAttr = newGroupAttr()
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-sleeper.Process.Pid, syscall.SIGKILL) // sh and its sleep
		_ = sleeper.Wait()
	})
	if !groupAlive(sleeper.Process.Pid) {
		t.Error("a running group counts as gone")
	}
}
