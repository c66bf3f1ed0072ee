package pool

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClassifyPHPLine(t *testing.T) {
	long := "NOTICE: PHP message: PHP Warning:  " + strings.Repeat("y", maxLineLen+100) + "\n"
	cut, _ := readLine(bufio.NewReaderSize(strings.NewReader(long), maxLineLen))
	cases := []struct {
		name  string
		line  string // as the master writes it
		level PHPLevel
		msg   string // "" when not classified
	}{
		{"parse error", "NOTICE: PHP message: PHP Parse error:  syntax error, unexpected end of file in /x/bad.php on line 2",
			PHPFatal, "PHP Parse error:  syntax error, unexpected end of file in /x/bad.php on line 2"},
		{"fatal error", "NOTICE: PHP message: PHP Fatal error:  Allowed memory size of 4194304 bytes exhausted in /x/a.php on line 1",
			PHPFatal, "PHP Fatal error:  Allowed memory size of 4194304 bytes exhausted in /x/a.php on line 1"},
		{"uncaught exception", "NOTICE: PHP message: PHP Fatal error:  Uncaught RuntimeException: boom in /x/e.php:2",
			PHPFatal, "PHP Fatal error:  Uncaught RuntimeException: boom in /x/e.php:2"},
		{"recoverable fatal", "NOTICE: PHP message: PHP Recoverable fatal error:  Object could not be converted in /x/r.php on line 3",
			PHPFatal, "PHP Recoverable fatal error:  Object could not be converted in /x/r.php on line 3"},
		{"warning", "NOTICE: PHP message: PHP Warning:  boom in /x/warn.php on line 1",
			PHPWarning, "PHP Warning:  boom in /x/warn.php on line 1"},
		{"startup warning", "[01-Dec-2026 22:49:23] NOTICE: PHP message: PHP Warning:  PHP Startup: Unable to load dynamic library 'x.so'",
			PHPWarning, "PHP Warning:  PHP Startup: Unable to load dynamic library 'x.so'"},
		{"notice", "NOTICE: PHP message: PHP Notice:  n in /x/n.php on line 1", PHPNotice, "PHP Notice:  n in /x/n.php on line 1"},
		{"strict standards", "NOTICE: PHP message: PHP Strict Standards:  s in /x/s.php on line 1", PHPNotice, "PHP Strict Standards:  s in /x/s.php on line 1"},
		{"deprecated", "NOTICE: PHP message: PHP Deprecated:  d in /x/d.php on line 1", PHPDeprecated, "PHP Deprecated:  d in /x/d.php on line 1"},
		{"bare, error_log on stderr", "[01-Dec-2026 22:49:23 UTC] PHP Warning:  w in /x/w.php on line 4", PHPWarning, "PHP Warning:  w in /x/w.php on line 4"},
		{"cut at maxLineLen", cut, PHPWarning, strings.TrimPrefix(cut, "NOTICE: PHP message: ")},

		{"unknown error type", "NOTICE: PHP message: PHP Unknown error:  x in /x/u.php on line 1", "", ""},
		{"userland error_log", "NOTICE: PHP message: hello from error_log", "", ""},
		{"PHP message without a level", "NOTICE: PHP message: PHP something happened", "", ""},
		{"level without its colon and space", "NOTICE: PHP message: PHP Warning:boom", "", ""},
		{"lower case level", "NOTICE: PHP message: PHP warning:  boom", "", ""},
		{"fpm notice", "[22-Nov-2026 20:16:16] NOTICE: fpm is running, pid 10331", "", ""},
		{"fpm warning", "[22-Nov-2026 20:16:16] WARNING: [pool r1] seems busy", "", ""},
		{"fpm error quoting PHP", "ERROR: failed: PHP Warning:  x", "", ""},
		{"stack trace line", "Stack trace:", "", ""},
		{"thrown line", "  thrown in /x/e.php on line 2", "", ""},
		{"raw worker output", "raw stderr", "", ""},
		{"garbage", "\x00\xff PHP", "", ""},
		{"empty", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, text := parseFPMLine(tc.line)
			level, msg, ok := classifyPHPLine(text)
			if ok != (tc.msg != "") || level != tc.level || msg != tc.msg {
				t.Errorf("classifyPHPLine(%.80q) = %q %.80q %v, want %q %.80q", text, level, msg, ok, tc.level, tc.msg)
			}
		})
	}
}

// record is one log record as a recordHandler saw it.
type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// recordHandler keeps every record, with the attributes of With.
type recordHandler struct {
	mu    *sync.Mutex
	recs  *[]record
	attrs []slog.Attr
}

func newRecordHandler() *recordHandler {
	return &recordHandler{mu: &sync.Mutex{}, recs: &[]record{}}
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{mu: h.mu, recs: h.recs, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

func (h *recordHandler) records() []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]record(nil), *h.recs...)
}

// TestPHPErrorsClassified runs scripts that make real php-fpm log a parse
// error, a warning, a notice, a deprecation and an uncaught exception: the
// hook sees each once with its level, and each is logged at its slog level
// with source=php, php_level and the release, the exception's stack trace
// with it.
func TestPHPErrorsClassified(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{
		"parse.php":      "<?php\nif (\n",
		"warn.php":       `<?php echo $undefined; echo "ok";`,
		"notice.php":     `<?php trigger_error("a notice", E_USER_NOTICE); echo "ok";`,
		"deprecated.php": `<?php trigger_error("old api", E_USER_DEPRECATED); echo "ok";`,
		"uncaught.php":   "<?php\nfunction f() { throw new RuntimeException(\"boom\"); }\nf();\n",
		"sentinel.php":   `<?php error_log("sentinel"); echo "ok";`,
	})
	h := newRecordHandler()
	var mu sync.Mutex
	seen := map[PHPLevel]int{}
	p := startPool(t, Options{ID: "phperr", Root: root, Dir: poolDir(t), Binary: bin, Logger: slog.New(h),
		OnPHPError: func(l PHPLevel) {
			mu.Lock()
			seen[l]++
			mu.Unlock()
		}})
	for _, s := range []string{"parse.php", "warn.php", "notice.php", "deprecated.php", "uncaught.php", "sentinel.php"} {
		if _, err := runScript(t.Context(), p, s, ""); err != nil {
			t.Fatalf("run %s: %v", s, err)
		}
	}
	want := map[PHPLevel]int{PHPFatal: 2, PHPWarning: 1, PHPNotice: 1, PHPDeprecated: 1}
	counts := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(seen)
	}
	// Worker pipes are read in no set order: wait for the sentinel and
	// for the counts, then check that nothing more came.
	eventually(t, 20*time.Second, "sentinel not logged or hook counts short", func() bool {
		sentinel := false
		for _, r := range h.records() {
			sentinel = sentinel || strings.Contains(r.msg, "sentinel")
		}
		mu.Lock()
		defer mu.Unlock()
		for l, n := range want {
			if seen[l] < n {
				return false
			}
		}
		return sentinel
	})
	if got := counts(); got != fmt.Sprint(want) {
		t.Errorf("OnPHPError saw %s, want %v", got, want)
	}

	wantLog := []struct {
		contains string
		level    slog.Level
		php      PHPLevel // "" for source=php-fpm
	}{
		{"PHP Parse error:  Unclosed '('", slog.LevelError, PHPFatal},
		{"PHP Warning:  Undefined variable $undefined", slog.LevelWarn, PHPWarning},
		{"PHP Notice:  a notice", slog.LevelInfo, PHPNotice},
		{"PHP Deprecated:  old api", slog.LevelInfo, PHPDeprecated},
		{"PHP Fatal error:  Uncaught RuntimeException: boom", slog.LevelError, PHPFatal},
		{"Stack trace:", slog.LevelError, PHPFatal},
		{"  thrown in " + root + "/uncaught.php on line 2", slog.LevelError, PHPFatal},
		{"NOTICE: PHP message: sentinel", slog.LevelInfo, ""},
		{"NOTICE: ready to handle connections", slog.LevelInfo, ""},
	}
	recs := h.records()
	for _, w := range wantLog {
		var found *record
		for i := range recs {
			if strings.Contains(recs[i].msg, w.contains) {
				found = &recs[i]
				break
			}
		}
		if found == nil {
			t.Errorf("no log record holds %q", w.contains)
			continue
		}
		source := "php"
		if w.php == "" {
			source = "php-fpm"
		}
		if found.level != w.level || found.attrs["source"] != source || found.attrs["php_level"] != string(w.php) || found.attrs["release"] != "phperr" {
			t.Errorf("record %q: level %v attrs %v, want level %v source=%s php_level=%q release=phperr",
				found.msg, found.level, found.attrs, w.level, source, w.php)
		}
	}
}

// TestOutputLogContinuation pins which lines continue a PHP message: the
// unprefixed lines right after it, up to an uncaught exception's "thrown
// in" line or the next line php-fpm's logger wrote; each message counts
// once.
func TestOutputLogContinuation(t *testing.T) {
	in := []string{
		"NOTICE: PHP message: PHP Fatal error:  Uncaught RuntimeException: boom",
		"second line of the message in /x/e.php:2",
		"Stack trace:",
		"#0 {main}",
		"  thrown in /x/e.php on line 2",
		"raw output after the trace",
		"NOTICE: PHP message: PHP Warning:  two",
		"lines",
		"[01-Dec-2026 22:49:23] NOTICE: fpm is running, pid 1",
		"raw output after php-fpm's own line",
		"NOTICE: PHP message: PHP Deprecated:  d",
		"NOTICE: PHP message: hello from error_log",
		"raw output after an unclassified message",
	}
	want := []struct {
		level slog.Level
		php   string // php_level; "" for source=php-fpm
	}{
		{slog.LevelError, "fatal"}, {slog.LevelError, "fatal"}, {slog.LevelError, "fatal"}, {slog.LevelError, "fatal"}, {slog.LevelError, "fatal"},
		{slog.LevelInfo, ""},
		{slog.LevelWarn, "warning"}, {slog.LevelWarn, "warning"},
		{slog.LevelInfo, ""},
		{slog.LevelInfo, ""},
		{slog.LevelInfo, "deprecated"},
		{slog.LevelInfo, ""},
		{slog.LevelInfo, ""},
	}
	h := newRecordHandler()
	var calls []PHPLevel
	o := &outputLog{logger: slog.New(h), onError: func(l PHPLevel) { calls = append(calls, l) }}
	for _, line := range in {
		o.line(line)
	}
	recs := h.records()
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		source := "php"
		if w.php == "" {
			source = "php-fpm"
		}
		r := recs[i]
		if r.level != w.level || r.attrs["php_level"] != w.php || r.attrs["source"] != source {
			t.Errorf("line %q: level %v attrs %v, want %v php_level=%q source=%s", in[i], r.level, r.attrs, w.level, w.php, source)
		}
	}
	if fmt.Sprint(calls) != "[fatal warning deprecated]" {
		t.Errorf("OnPHPError calls %v, want [fatal warning deprecated]", calls)
	}
}
