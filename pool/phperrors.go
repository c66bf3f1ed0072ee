// phperrors.go owns what fpmux makes of the errors PHP logs through
// php-fpm: which of the master's output lines are PHP's own messages, their
// level (PHPLevel), the slog level each is logged at, and the lines that
// continue a multi-line message (an uncaught exception's stack trace).
//
// php-fpm 8.2 hands PHP's log messages (error_log unset, the default) to
// its own logger, which prefixes them, and with catch_workers_output =
// yes, decorate_workers_output = no they reach the master's output as
//
//	NOTICE: PHP message: PHP Warning:  boom in /x/warn.php on line 1
//
// one record per message; a message holding newlines goes on over the next
// lines, which have no prefix. The level words are those of php-src's
// main/main.c (php_error_cb): "Fatal error" (E_ERROR, E_CORE_ERROR,
// E_COMPILE_ERROR, E_USER_ERROR, and an uncaught exception, which PHP logs
// as "PHP Fatal error:  Uncaught ..."), "Recoverable fatal error", "Parse
// error", "Warning" (E_WARNING, E_CORE_WARNING, E_COMPILE_WARNING,
// E_USER_WARNING), "Notice" (E_NOTICE, E_USER_NOTICE), "Strict Standards",
// "Deprecated" (E_DEPRECATED, E_USER_DEPRECATED). Its fallback, "Unknown
// error", names no level and is left unclassified, as is a "PHP message:"
// that userland error_log() wrote.
//
// What this does not see: a pool whose php.ini sends error_log to a file
// or syslog (nothing reaches php-fpm), and display_errors output, which
// goes into the response body only.

package pool

import (
	"context"
	"log/slog"
	"strings"
)

// PHPLevel is the class of an error PHP logged.
type PHPLevel string

const (
	// PHPFatal: the request died (fatal, parse, recoverable fatal error,
	// uncaught exception).
	PHPFatal PHPLevel = "fatal"
	// PHPWarning: a Warning of any origin (run time, core, compile, user).
	PHPWarning PHPLevel = "warning"
	// PHPNotice: a Notice or Strict Standards.
	PHPNotice PHPLevel = "notice"
	// PHPDeprecated: a Deprecated, PHP's or a library's (E_USER_DEPRECATED).
	PHPDeprecated PHPLevel = "deprecated"
)

// PHPLevels lists every PHPLevel, for callers that make a series for each.
var PHPLevels = []PHPLevel{PHPFatal, PHPWarning, PHPNotice, PHPDeprecated}

// phpTypes maps the word PHP writes after "PHP " to its level.
var phpTypes = map[string]PHPLevel{
	"Fatal error":             PHPFatal,
	"Recoverable fatal error": PHPFatal,
	"Parse error":             PHPFatal,
	"Warning":                 PHPWarning,
	"Notice":                  PHPNotice,
	"Strict Standards":        PHPNotice,
	"Deprecated":              PHPDeprecated,
}

// slogLevel is the level a PHP error is logged at. Notices and
// deprecations stay at Info, where every php-fpm line was before fpmux
// classified them: an operator at the default level loses none of them,
// and PHP's error_reporting, not fpmux, is the setting that silences a
// noisy application.
func (l PHPLevel) slogLevel() slog.Level {
	switch l {
	case PHPFatal:
		return slog.LevelError
	case PHPWarning:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// fpmLevels are the prefixes php-fpm's logger writes (after the timestamp
// that parseFPMLine strips).
var fpmLevels = []string{"DEBUG: ", "NOTICE: ", "WARNING: ", "ERROR: ", "ALERT: "}

// cutFPMLevel returns text without php-fpm's level prefix, if it has one.
func cutFPMLevel(text string) (string, bool) {
	for _, p := range fpmLevels {
		if rest, ok := strings.CutPrefix(text, p); ok {
			return rest, true
		}
	}
	return text, false
}

// classifyPHPLine reports whether text, a master output line as
// parseFPMLine returns it, opens an error PHP logged, its level, and the
// message from "PHP " on. Besides php-fpm's "NOTICE: PHP message: " form it
// takes the bare "PHP Warning:  ..." that PHP writes when a pool's error_log
// is stderr.
func classifyPHPLine(text string) (level PHPLevel, msg string, ok bool) {
	msg = text
	if rest, prefixed := cutFPMLevel(text); prefixed {
		if msg, ok = strings.CutPrefix(rest, "PHP message: "); !ok {
			return "", "", false
		}
	}
	rest, ok := strings.CutPrefix(msg, "PHP ")
	if !ok {
		return "", "", false
	}
	word, after, ok := strings.Cut(rest, ":")
	if !ok || !strings.HasPrefix(after, " ") {
		return "", "", false
	}
	level, ok = phpTypes[word]
	if !ok {
		return "", "", false
	}
	return level, msg, true
}

// outputLog logs the master's output lines one by one: PHP's errors at
// their level with source=php and php_level, each counted once through
// onError; the lines that continue one (no php-fpm prefix, right after it)
// at the same level, not counted; everything else as parseFPMLine says,
// with source=php-fpm. Used by the output reader goroutine only.
type outputLog struct {
	logger  *slog.Logger
	onError func(PHPLevel) // Options.OnPHPError, or nil
	cont    PHPLevel       // the open message's level, "" when none is open
}

// line logs one output line and returns it as parseFPMLine does, for the
// tail.
func (o *outputLog) line(line string) string {
	fpmLevel, text := parseFPMLine(line)
	_, leveled := cutFPMLevel(text)
	o.log(fpmLevel, text, leveled || text != line)
	return text
}

// log logs text; prefixed reports that php-fpm's logger wrote it (a
// timestamp or a level), which no continuation line has.
func (o *outputLog) log(fpmLevel slog.Level, text string, prefixed bool) {
	ctx := context.Background()
	if level, msg, ok := classifyPHPLine(text); ok {
		o.cont = level
		o.logger.Log(ctx, level.slogLevel(), msg, "source", "php", "php_level", string(level))
		if o.onError != nil {
			o.onError(level)
		}
		return
	}
	if o.cont != "" && !prefixed {
		o.logger.Log(ctx, o.cont.slogLevel(), text, "source", "php", "php_level", string(o.cont))
		// "  thrown in X on line N" ends an uncaught exception's trace.
		if strings.HasPrefix(text, "  thrown in ") {
			o.cont = ""
		}
		return
	}
	o.cont = ""
	o.logger.Log(ctx, fpmLevel, text, "source", "php-fpm")
}
