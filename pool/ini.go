// ini.go owns reading php-fpm's own configuration files (www.conf,
// php-fpm.conf) the way php-fpm's ini scanner reads them, so that an
// operator's files serve as they are: sections, ';' comments, include
// globs, double-quoted values with their escapes and ${ENV}, single-quoted
// raw values, bare values.

package pool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// iniEntry is one directive read from a php-fpm config file.
type iniEntry struct {
	Section string // "global" (any case) or a pool name, as written
	Key     string
	Value   string // unquoted, escapes and ${ENV} resolved
	// Bare is set when the value stood without quotes and holds only
	// characters that mean the same written bare again: php-fpm's scanner
	// evaluates constants and expressions in a bare value
	// (E_ALL & ~E_DEPRECATED) and turns yes/no/on/off into 1 and "", so
	// such a value is written back bare to mean what it meant.
	Bare bool
	File string
	Line int
}

// where names the file and line an entry came from.
func (e iniEntry) where() string { return fmt.Sprintf("%s:%d", e.File, e.Line) }

// maxIncludeDepth bounds include nesting (php-fpm has no bound; a file
// that includes itself would never end).
const maxIncludeDepth = 10

var (
	iniKeyLineRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]+(\[[^\]\s]*\])?$`)
	// bareSafeRe is what a bare value may hold to be written bare again:
	// no quote, ';', '=', '$', '{', '[' or '\' that would change its
	// reading.
	bareSafeRe = regexp.MustCompile(`^[A-Za-z0-9_ .,:/@%+*~&|!^()\-]*$`)
)

// readINI reads the php-fpm config files that pattern (a path or a glob, as
// php-fpm's include takes) matches, in name order, following include
// directives; getenv resolves ${NAME}. A pattern that matches nothing is
// an error, as a missing file is.
func readINI(pattern string, getenv func(string) string) ([]iniEntry, error) {
	r := &iniReader{getenv: getenv}
	if err := r.include(pattern, "", 0); err != nil {
		return nil, err
	}
	return r.entries, nil
}

type iniReader struct {
	getenv  func(string) string
	entries []iniEntry
}

// include reads every file pattern matches; from names the include
// directive ("" for the top).
func (r *iniReader) include(pattern, from string, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: include: nested more than %d deep (does a file include itself?)", from, maxIncludeDepth)
	}
	files := []string{pattern}
	if strings.ContainsAny(pattern, "*?[") {
		m, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("%sbad glob %q: %w", prefixed(from), pattern, err)
		}
		if len(m) == 0 {
			return fmt.Errorf("%s%s: no file matches", prefixed(from), pattern)
		}
		slices.Sort(m)
		files = m
	}
	for _, f := range files {
		if err := r.file(f, depth); err != nil {
			if from != "" {
				return fmt.Errorf("%s: include: %w", from, err)
			}
			return err
		}
	}
	return nil
}

func prefixed(from string) string {
	if from == "" {
		return ""
	}
	return from + ": include: "
}

func (r *iniReader) file(path string, depth int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read php-fpm config: %w", err)
	}
	defer f.Close()
	var errs []error
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		at := fmt.Sprintf("%s:%d", path, n)
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			name, rest, ok := strings.Cut(line[1:], "]")
			rest = strings.TrimSpace(rest)
			name = strings.TrimSpace(name)
			if !ok || name == "" || rest != "" && rest[0] != ';' {
				errs = append(errs, fmt.Errorf("%s: %q: want a section header like [www]", at, line))
				continue
			}
			section = name
			continue
		}
		key, raw, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !iniKeyLineRe.MatchString(key) {
			errs = append(errs, fmt.Errorf("%s: %q: want name = value", at, line))
			continue
		}
		val, bare, err := r.value(strings.TrimSpace(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", at, key, err))
			continue
		}
		if strings.EqualFold(key, "include") {
			if !filepath.IsAbs(val) {
				errs = append(errs, fmt.Errorf("%s: include %q: a relative include is taken from php-fpm's install prefix, "+
					"which fpmux does not know: write it as an absolute path", at, val))
				continue
			}
			if err := r.include(val, at, depth+1); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if section == "" {
			errs = append(errs, fmt.Errorf("%s: %s: outside any section: put it under [global] or a pool's [name]", at, key))
			continue
		}
		r.entries = append(r.entries, iniEntry{Section: section, Key: key, Value: val, Bare: bare, File: path, Line: n})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// value reads the right side of "name = value" as php-fpm's scanner does:
// quoted strings (which may follow each other and bare parts: "a" 'b' c),
// ';' starting a comment outside quotes.
func (r *iniReader) value(s string) (val string, bare bool, err error) {
	var b strings.Builder
	quoted, expanded := false, false
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ';':
			i = len(s)
		case c == '"':
			quoted = true
			end := -1
			for j := i + 1; j < len(s); j++ {
				switch {
				case s[j] == '\\' && j+1 < len(s) && strings.IndexByte(`"\$`, s[j+1]) >= 0:
					b.WriteByte(s[j+1])
					j++
				case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
					n, k, err := r.env(s[j:])
					if err != nil {
						return "", false, err
					}
					b.WriteString(n)
					j += k - 1
				case s[j] == '"':
					end = j
				default:
					b.WriteByte(s[j])
				}
				if end >= 0 {
					break
				}
			}
			if end < 0 {
				return "", false, errors.New("a double-quoted value must end on its line")
			}
			i = end + 1
		case c == '\'':
			quoted = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", false, errors.New("a single-quoted value must end on its line")
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			n, k, err := r.env(s[i:])
			if err != nil {
				return "", false, err
			}
			expanded = true
			b.WriteString(n)
			i += k
		default:
			j := i
			for j < len(s) && strings.IndexByte(`;"'`, s[j]) < 0 && !(s[j] == '$' && j+1 < len(s) && s[j+1] == '{') {
				j++
			}
			part := s[i:j]
			switch {
			case j == len(s) || s[j] == ';':
				part = strings.TrimRight(part, " \t")
			case strings.TrimLeft(part, " \t") == "" && (s[j] == '"' || s[j] == '\''):
				part = "" // php-fpm drops the blanks between quoted strings
			}
			b.WriteString(part)
			i = j
		}
	}
	val = b.String()
	return val, !quoted && !expanded && bareSafeRe.MatchString(val), nil
}

// env resolves the ${NAME} s starts with and returns its value and length.
func (r *iniReader) env(s string) (string, int, error) {
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, errors.New("${ without its closing }")
	}
	return r.getenv(s[2:end]), end + 1, nil
}
