// slowlog.go owns reading back a pool's slowlog (the slowlog directive,
// with request_slowlog_timeout): the last requests php-fpm found running
// past the timeout, each with the PHP stack it dumped, for `fpmux status
// ID -full`.

package pool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SlowEntry is one request php-fpm's slowlog holds.
type SlowEntry struct {
	Time   string   `json:"time"` // php-fpm's own stamp, as written ("02-Dec-2026 00:05:01")
	PID    int      `json:"pid"`
	Script string   `json:"script"`
	Stack  []string `json:"stack"` // innermost frame first, as php-fpm writes them
}

// slowlogTail bounds what is read of a slowlog: its end, where the last
// entries are.
const slowlogTail = 64 << 10

// SlowLog returns up to max of the last entries of the pool's slowlog,
// newest last, and its path; no slowlog directive is no entry and no path.
func (p *Pool) SlowLog(max int) ([]SlowEntry, string, error) {
	path := p.o.Directives["slowlog"]
	if path == "" {
		return nil, "", nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, path, nil // nothing was slow yet
	}
	if err != nil {
		return nil, path, fmt.Errorf("read slowlog of pool %s: %w", p.o.ID, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > slowlogTail {
		if _, err := f.Seek(fi.Size()-slowlogTail, io.SeekStart); err != nil {
			return nil, path, fmt.Errorf("read slowlog of pool %s: %w", p.o.ID, err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, slowlogTail))
	if err != nil {
		return nil, path, fmt.Errorf("read slowlog of pool %s: %w", p.o.ID, err)
	}
	entries := parseSlowlog(string(b))
	return entries[len(entries)-min(max, len(entries)):], path, nil
}

// parseSlowlog reads php-fpm's slowlog entries: each begins with a line
//
//	[02-Dec-2026 00:05:01]  [pool r1] pid 1234
//
// then "script_filename = ..." and one line per frame. A part of an entry
// before the first header (where a tail read began) is skipped.
func parseSlowlog(text string) []SlowEntry {
	var out []SlowEntry
	var cur *SlowEntry
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, "\r")
		if t, rest, ok := strings.Cut(l, "]  [pool "); ok && strings.HasPrefix(t, "[") {
			_, pid, _ := strings.Cut(rest, "] pid ")
			n, err := strconv.Atoi(strings.TrimSpace(pid))
			if err == nil {
				out = append(out, SlowEntry{Time: strings.TrimPrefix(t, "["), PID: n})
				cur = &out[len(out)-1]
				continue
			}
		}
		switch {
		case cur == nil || l == "":
		case strings.HasPrefix(l, "script_filename = "):
			cur.Script = strings.TrimPrefix(l, "script_filename = ")
		default:
			cur.Stack = append(cur.Stack, l)
		}
	}
	return out
}
