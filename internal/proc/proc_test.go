package proc

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		file string
		want Stat
		bad  bool // ErrMalformed
	}{
		{file: "master", want: Stat{Pid: 4021, Comm: "php-fpm8.2", State: 'S', PPid: 1, Pgrp: 4021, UTime: 2, STime: 1, CUTime: 30, CSTime: 12}},
		{file: "idle-worker", want: Stat{Pid: 4025, Comm: "php-fpm8.2", State: 'R', PPid: 4021, Pgrp: 4021, Nice: 19, Policy: 5, UTime: 2, STime: 1}},
		// comm is whatever a program calls itself: only the last ')' ends it.
		{file: "comm-with-parens", want: Stat{Pid: 77, Comm: "a) (b c) )d", State: 't', PPid: 12, Pgrp: 70, Nice: 5, Policy: 3, UTime: 2, STime: 1}},
		{file: "zombie", want: Stat{Pid: 4030, Comm: "sh", State: 'Z', PPid: 4021, Pgrp: 4021, UTime: 2, STime: 1}},
		{file: "negative-nice", want: Stat{Pid: 9, Comm: "nginx", State: 'S', PPid: 1, Pgrp: 9, Nice: -5, UTime: 2, STime: 1}},
		{file: "kernel-6.18-cat", want: Stat{Pid: 19679, Comm: "cat", State: 'R', PPid: 19674, Pgrp: 19674}},
		{file: "truncated", bad: true},
		{file: "no-comm", bad: true},
		{file: "long-state", bad: true},
	}
	for _, tt := range tests {
		got, err := parseStat(fixture(t, filepath.Join("stat", tt.file)))
		if tt.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %+v, %v; want ErrMalformed", tt.file, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.file, got, err, tt.want)
		}
	}
}

func TestLive(t *testing.T) {
	for state, live := range map[byte]bool{'R': true, 'S': true, 'D': true, 'T': true, 't': true, 'Z': false, 'X': false} {
		if got := (Stat{State: state}).Live(); got != live {
			t.Errorf("state %c: Live %v, want %v", state, got, live)
		}
	}
}

func TestParseSmapsRollup(t *testing.T) {
	tests := []struct {
		file     string
		rss, pss uint64
		ok       bool
	}{
		{"kernel-6", 1704 << 10, 519 << 10, true},
		{"kernel-6.18", 1692 << 10, 264 << 10, true},
		{"no-pss", 0, 0, false},
		{"bad-number", 0, 0, false},
		{"empty", 0, 0, false},
	}
	for _, tt := range tests {
		rss, pss, err := parseSmapsRollup(fixture(t, filepath.Join("smaps_rollup", tt.file)))
		if (err == nil) != tt.ok || rss != tt.rss || pss != tt.pss {
			t.Errorf("%s: got %d, %d, %v; want %d, %d, ok=%v", tt.file, rss, pss, err, tt.rss, tt.pss, tt.ok)
		}
	}
}

func TestLoopbackListener(t *testing.T) {
	tcp := fixture(t, "net-tcp")
	tests := []struct {
		port  int
		inode string
	}{
		{35207, "976237"}, // 0100007F:8987, listening
		{8081, "980002"},
		{8080, ""}, // a connection from it, no listener
		{2024, ""}, // listening on 0.0.0.0, not 127.0.0.1
		{9, ""},
	}
	for _, tt := range tests {
		inode, ok := loopbackListener(tcp, tt.port)
		if inode != tt.inode || ok != (tt.inode != "") {
			t.Errorf("port %d: %q %v, want %q", tt.port, inode, ok, tt.inode)
		}
	}
}

func TestParseLoadAverage(t *testing.T) {
	if got, err := parseLoadAverage(fixture(t, "loadavg")); err != nil || got != "3.68 2.35 1.03" {
		t.Errorf("loadavg: %q, %v", got, err)
	}
	if _, err := parseLoadAverage([]byte("3.68 2.35\n")); err == nil {
		t.Error("two fields accepted")
	}
}

// TestSelf reads the test's own process through every reader.
func TestSelf(t *testing.T) {
	pid := os.Getpid()
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != pid || !st.Live() || st.PPid != os.Getppid() || st.Pgrp == 0 || st.Comm == "" {
		t.Errorf("ReadStat(self) = %+v", st)
	}
	group, err := Group(st.Pgrp)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(group, func(s Stat) bool { return s.Pid == pid }) {
		t.Errorf("Group(%d) = %+v, without the test's own pid %d", st.Pgrp, group, pid)
	}
	ps, err := Processes()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p Process) bool { return p.Pid == pid })
	if i < 0 {
		t.Errorf("Processes: %d processes, without the test's own", len(ps))
	} else if ps[i].Pgrp != st.Pgrp || ps[i].Cmdline != strings.Join(os.Args, " ") {
		t.Errorf("Processes: the test's own process is %+v", ps[i])
	}
	cl, err := Cmdline(pid)
	if err != nil || cl != strings.Join(os.Args, " ") {
		t.Errorf("Cmdline(self) = %q, %v; want %q", cl, err, strings.Join(os.Args, " "))
	}

	f, err := os.Open("testdata/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds, err := FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("testdata/loadavg")
	if !slices.Contains(fds, FD{int(f.Fd()), want}) {
		t.Errorf("FDs(self) = %v, without %d->%s", fds, f.Fd(), want)
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if ok, err := ListensOn(pid, port); !ok || err != nil {
		t.Errorf("ListensOn(self, %d) = %v, %v while listening", port, ok, err)
	}
	ln.Close()
	if ok, err := ListensOn(pid, port); ok || err != nil {
		t.Errorf("ListensOn(self, %d) = %v, %v once closed", port, ok, err)
	}

	if rss, pss, err := SmapsRollup(pid); err != nil || rss == 0 || pss == 0 || pss > rss {
		t.Errorf("SmapsRollup(self) = %d, %d, %v; want 0 < PSS <= RSS", rss, pss, err)
	}
	if _, err := LoadAverage(); err != nil {
		t.Error(err)
	}
}

// TestGone: a process that is not there is an error the caller can tell
// from a malformed line.
func TestGone(t *testing.T) {
	const pid = 1 << 30 // above pid_max's limit (4194304)
	if _, err := ReadStat(pid); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrMalformed) {
		t.Errorf("ReadStat of no process: %v, want fs.ErrNotExist", err)
	}
	if _, err := Cmdline(pid); err == nil {
		t.Error("Cmdline of no process succeeded")
	}
	if _, err := FDs(pid); err == nil {
		t.Error("FDs of no process succeeded")
	}
	if _, _, err := SmapsRollup(pid); err == nil {
		t.Error("SmapsRollup of no process succeeded")
	}
}
