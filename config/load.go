package config

// This file owns reading a configuration file: strict decoding over the
// defaults, the key → line index, and turning yaml.v3's messages into
// problems that name their key.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the YAML file at path on top of Default() and validates the
// result. Unknown keys are errors. Maps (php_fpm.ini, php_fpm.pool) merge
// key by key over the defaults, and a map key set to null removes it;
// lists (allowed_roots) replace the default list; a scalar key set to null
// (e.g. "metrics:" with nothing after it) becomes empty. An empty file, or
// path "", gives the defaults.
//
// The error names the file and holds every problem found, decoding and
// validation alike, one per line of its message, each with its key and
// line: "load config /etc/fpmux.yaml: drain_timeout (line 7): must be
// positive".
func Load(path string) (*Config, error) {
	c := Default()
	if path == "" {
		if err := c.Validate(); err != nil {
			return nil, prefixEach("load config (defaults)", err)
		}
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	if err := c.decodeFile(data); err != nil {
		return nil, prefixEach("load config "+path, err)
	}
	return c, nil
}

// decodeFile decodes data over c, records the line of every key, and
// validates. Decoding problems and validation problems come back together,
// sorted by line.
func (c *Config) decodeFile(data []byte) error {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		return c.Validate() // empty file: the defaults
	case err != nil:
		return err // a syntax error; yaml.v3 names the line
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return errors.New("the file holds more than one YAML document")
	}

	idx := newLineIndex(&root)
	c.lines = idx.keys

	var probs []error
	if err := decodeStrict(data, c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return err
		}
		for _, msg := range te.Errors {
			probs = append(probs, idx.problem(msg))
		}
	}
	c.applyNulls(&root)
	c.healthDefaults()
	if err := c.Validate(); err != nil {
		probs = append(probs, unjoin(err)...)
	}
	return joinSorted(probs)
}

// decodeStrict decodes the first YAML document in data into c, refusing
// keys that c has no field for. Default uses it too, so the defaults go
// through the same decoder as a file.
func decodeStrict(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// applyNulls gives a YAML null the meaning an operator expects where
// yaml.v3 would do otherwise. yaml.v3 leaves a string or duration unchanged
// on null, which would quietly keep the default ("metrics:" would keep
// metrics on); here it becomes empty (zero). A null ini or pool map would
// drop the defaults; here it is an empty map, which keeps them (as "{}"
// does). A null value inside ini or pool removes that key.
func (c *Config) applyNulls(root *yaml.Node) {
	top := mappingOf(root)
	if top == nil {
		return
	}
	strs := map[string]*string{
		"listen": &c.Listen, "admin": &c.Admin, "metrics": &c.Metrics,
		"state_dir": &c.StateDir, "docroot": &c.Docroot,
		"php_fpm.binary": &c.PHPFPM.Binary, "php_fpm.pool_file": &c.PHPFPM.PoolFile,
		"php_fpm.global_file": &c.PHPFPM.GlobalFile,
	}
	durs := map[string]*Duration{
		"drain_timeout":                &c.DrainTimeout,
		"php_fpm.start_timeout":        &c.PHPFPM.StartTimeout,
		"php_fpm.stop_timeout":         &c.PHPFPM.StopTimeout,
		"php_fpm.wedge_check_interval": &c.PHPFPM.WedgeCheckInterval,
	}
	defs := Default().PHPFPM
	maps := map[string]struct {
		dst *map[string]string
		def map[string]string
	}{
		"php_fpm.ini":    {&c.PHPFPM.Ini, defs.Ini},
		"php_fpm.pool":   {&c.PHPFPM.Pool, defs.Pool},
		"php_fpm.global": {&c.PHPFPM.Global, defs.Global},
	}
	var visit func(m *yaml.Node, prefix string)
	visit = func(m *yaml.Node, prefix string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			path := joinPath(prefix, k.Value)
			if s, ok := strs[path]; ok && isNull(v) {
				*s = ""
			}
			if d, ok := durs[path]; ok && isNull(v) {
				*d = 0
			}
			if mp, ok := maps[path]; ok {
				switch {
				case isNull(v):
					*mp.dst = mp.def // yaml.v3 set it to nil
				case v.Kind == yaml.MappingNode && *mp.dst != nil:
					for j := 0; j+1 < len(v.Content); j += 2 {
						if isNull(v.Content[j+1]) {
							delete(*mp.dst, v.Content[j].Value)
						}
					}
				}
			}
			if path == "php_fpm" && v.Kind == yaml.MappingNode {
				visit(v, path)
			}
		}
	}
	visit(top, "")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// mappingOf returns the top-level mapping of a parsed document, or nil.
func mappingOf(root *yaml.Node) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	return n
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// lineIndex knows where each key of a file sits.
type lineIndex struct {
	keys   map[string]int     // dotted key path → line of the key
	byLine map[int][]lineNode // line → the keys and values that start on it
}

// lineNode is a key, or the value of a key, starting on some line.
type lineNode struct {
	path  string
	depth int
	isKey bool
}

func newLineIndex(root *yaml.Node) *lineIndex {
	idx := &lineIndex{keys: map[string]int{}, byLine: map[int][]lineNode{}}
	idx.walk(root, "", 0)
	return idx
}

func (idx *lineIndex) walk(n *yaml.Node, prefix string, depth int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			idx.walk(c, prefix, depth)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			path := joinPath(prefix, k.Value)
			if _, seen := idx.keys[path]; !seen {
				idx.keys[path] = k.Line
			}
			idx.byLine[k.Line] = append(idx.byLine[k.Line], lineNode{path, depth, true})
			idx.byLine[v.Line] = append(idx.byLine[v.Line], lineNode{path, depth, false})
			idx.walk(v, path, depth+1)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := prefix + "[" + strconv.Itoa(i) + "]"
			idx.keys[path] = item.Line
			idx.byLine[item.Line] = append(idx.byLine[item.Line], lineNode{path, depth, false})
			idx.walk(item, path, depth+1)
		}
	}
}

var (
	reLineMsg    = regexp.MustCompile(`^line (\d+): (.*)$`)
	reNotFound   = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	reDuplicate  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reUnmarshal  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)$")
	humanTargets = map[string]string{
		"string":             "a string",
		"[]string":           "a list of strings",
		"map[string]string":  "a mapping of strings",
		"config.PHPFPM":      "a mapping",
		"config.Config":      "a mapping",
		"config.guardFields": "a mapping",
		"int":                "an integer",
		"float64":            "a number",
	}
)

// problem turns one of yaml.v3's type errors ("line 3: field lisen not
// found in type config.Config") into a problem naming its key.
func (idx *lineIndex) problem(msg string) error {
	m := reLineMsg.FindStringSubmatch(msg)
	if m == nil {
		return &problem{msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]

	if f := reNotFound.FindStringSubmatch(rest); f != nil {
		if path, ok := idx.keyOn(line, f[1]); ok {
			parent := strings.TrimSuffix(strings.TrimSuffix(path, f[1]), ".")
			parent = reIndex.ReplaceAllString(parent, "[]")
			why := "unknown key"
			if known := knownKeys(parent); known != "" {
				why += " (known keys here: " + known + ")"
			}
			return &problem{key: path, line: line, msg: why}
		}
	}
	if d := reDuplicate.FindStringSubmatch(rest); d != nil {
		if path, ok := idx.keyOn(line, d[1]); ok {
			return &problem{key: path, line: line, msg: "duplicate key (first set on line " + d[2] + ")"}
		}
	}
	u := reUnmarshal.FindStringSubmatch(rest)
	target := ""
	switch {
	case u != nil:
		target = u[3]
	case strings.Contains(rest, "as a duration") || strings.HasPrefix(rest, "want a duration"):
		target = "config.Duration" // from Duration.UnmarshalYAML
	}
	if path, ok := idx.valueOn(line, target); ok {
		if u != nil {
			want, ok := humanTargets[u[3]]
			if !ok {
				want, ok = healthTargets[u[3]]
			}
			if !ok {
				want = u[3]
			}
			got := map[string]string{"seq": "a list", "map": "a mapping"}[u[1]]
			switch {
			case got == "" && u[2] != "":
				got = "a single value (" + strconv.Quote(u[2]) + ")"
			case got == "":
				got = "a single value"
			}
			rest = "want " + want + ", got " + got
		}
		return &problem{key: path, line: line, msg: rest}
	}
	return &problem{line: line, msg: rest}
}

// keyOn finds the one key on line whose last part is name.
func (idx *lineIndex) keyOn(line int, name string) (string, bool) {
	var found []string
	for _, n := range idx.byLine[line] {
		if n.isKey && (n.path == name || strings.HasSuffix(n.path, "."+name)) {
			found = append(found, n.path)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

// valueOn finds the key whose value yaml.v3 could not decode into a
// target Go type ("" when the message names none): the outermost value
// starting on line that sits where the target type does. (A block list or
// mapping starts on the line of its first item, so both are candidates.)
func (idx *lineIndex) valueOn(line int, target string) (string, bool) {
	var found []string
	depth := -1
	for _, n := range idx.byLine[line] {
		switch {
		case n.isKey:
		case target != "" && goTypeAt(n.path) != target:
		case depth == -1 || n.depth < depth:
			found, depth = []string{n.path}, n.depth
		case n.depth == depth:
			found = append(found, n.path)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

// goTypeAt names the Go type that decodes the value at a key path, as
// yaml.v3 writes it in its messages.
func goTypeAt(path string) string {
	switch {
	case path == "php_fpm":
		return "config.PHPFPM"
	case path == "php_fpm.ini" || path == "php_fpm.pool" || path == "php_fpm.global":
		return "map[string]string"
	case path == "allowed_roots" || path == "warmup":
		return "[]string"
	case path == "guard":
		return "config.guardFields"
	case path == "guard.max_error_ratio":
		return "float64"
	case path == "guard.min_requests" || path == "guard.max_fatal":
		return "int"
	case path == "health":
		return "[]config.HealthCheck"
	case reIndex.ReplaceAllString(path, "[]") == "health[]":
		return "config.HealthCheck"
	case reHealthField.MatchString(path):
		return map[string]string{"status": "int", "timeout": "config.Duration"}[reHealthField.FindStringSubmatch(path)[1]]
	case path == "drain_timeout" || path == "php_fpm.start_timeout" || path == "php_fpm.stop_timeout",
		path == "php_fpm.wedge_check_interval", path == "guard.window":
		return "config.Duration"
	}
	if t := fieldType(path); t != nil {
		return t.String() // "int", "[]string", "config.Duration", as yaml.v3 names them
	}
	return "string"
}

// fieldType is the Go type of the field a dotted key path decodes into,
// found by the yaml tags; nil when there is none.
func fieldType(path string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, part := range strings.Split(path, ".") {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		var next reflect.Type
		for f := range t.Fields() {
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == part {
				next = f.Type
			}
		}
		if next == nil {
			return nil
		}
		t = next
	}
	return t
}

// knownKeys lists the keys a section of the file takes ("" is the top).
func knownKeys(section string) string {
	var t reflect.Type
	switch section {
	case "":
		t = reflect.TypeFor[Config]()
	case "php_fpm":
		t = reflect.TypeFor[PHPFPM]()
	case "guard":
		t = reflect.TypeFor[Guard]()
	case "health[]":
		t = reflect.TypeFor[HealthCheck]()
	default:
		return ""
	}
	var names []string
	for f := range t.Fields() {
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// problem is one thing wrong with a configuration, named by its key and,
// when the configuration came from a file, its line.
type problem struct {
	key  string
	line int
	msg  string
}

func (p *problem) Error() string {
	switch {
	case p.key != "" && p.line > 0:
		return fmt.Sprintf("%s (line %d): %s", p.key, p.line, p.msg)
	case p.key != "":
		return p.key + ": " + p.msg
	case p.line > 0:
		return fmt.Sprintf("line %d: %s", p.line, p.msg)
	}
	return p.msg
}

// joinSorted joins problems in file order; those without a line go last,
// in the order given.
func joinSorted(errs []error) error {
	lineOf := func(e error) int {
		var p *problem
		if errors.As(e, &p) && p.line > 0 {
			return p.line
		}
		return int(^uint(0) >> 1)
	}
	sort.SliceStable(errs, func(i, j int) bool { return lineOf(errs[i]) < lineOf(errs[j]) })
	return errors.Join(errs...)
}

// unjoin returns the errors an errors.Join holds, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// prefixEach wraps every problem in err with op, so each line of the
// message stands alone ("load config /etc/fpmux.yaml: listen (line 1): ...").
func prefixEach(op string, err error) error {
	errs := unjoin(err)
	for i, e := range errs {
		errs[i] = fmt.Errorf("%s: %w", op, e)
	}
	return errors.Join(errs...)
}
