package config

// This file owns the health checks a new release must pass before it is
// ready (the health key, and a deploy's own list), and warmup_failures,
// which says whether a failed warm-up path fails the deploy too.

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// HealthCheck is one request a new release's pool must answer as told
// before the release becomes ready. Zero values a file or a deploy left
// out take the defaults (see WithDefaults).
type HealthCheck struct {
	// Path is the request path and query ("/health", "/index.php?check=db"),
	// sent as the warm-up sends its paths (nginx's params, a route going
	// to the front controller /index.php) with the header
	// "X-Fpmux-Health: 1". Required; starts with '/'.
	Path string `yaml:"path" json:"path"`

	// Status is the HTTP status the answer must carry. Default: 200.
	Status int `yaml:"status" json:"status"`

	// Body, when set, must appear in the answer's body (within its first
	// MaxHealthBody bytes). Default: "" (any body).
	Body string `yaml:"body" json:"body,omitempty"`

	// Timeout bounds the check, from the connection to the last byte of
	// the answer: a script that hangs fails it. Default: 5s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Defaults of a health check's fields.
const (
	DefaultHealthStatus  = 200
	DefaultHealthTimeout = Duration(5 * time.Second)
)

// MaxHealth bounds the health checks of the config or of one deploy: they
// run one after another before the release is ready.
const MaxHealth = 20

// MaxHealthBody is how much of an answer's body a health check's Body is
// looked for in; what an answer sends beyond it is read and discarded.
const MaxHealthBody = 1 << 20

// maxHealthBodyWant bounds the Body a check looks for.
const maxHealthBodyWant = 4096

// reIndex finds the list indexes of a key path ("health[2].status"), and
// reHealthField a health check's field; healthTargets names the Go types
// of the health list in yaml.v3's messages as a person would (see
// lineIndex.problem).
var (
	reIndex       = regexp.MustCompile(`\[\d+\]`)
	reHealthField = regexp.MustCompile(`^health\[\d+\]\.(\w+)$`)
	healthTargets = map[string]string{
		"[]config.HealthCheck": "a list of checks like {path: /health}",
		"config.HealthCheck":   "a check like {path: /health, status: 200}",
	}
)

// Values of warmup_failures.
const (
	WarmupFailuresFail = "fail"
	WarmupFailuresWarn = "warn"
)

// WithDefaults returns h with the defaults in its zero fields: for a
// check given as a path alone (fpmux deploy -health PATH, or an API
// object with only "path").
func (h HealthCheck) WithDefaults() HealthCheck {
	if h.Status == 0 {
		h.Status = DefaultHealthStatus
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultHealthTimeout
	}
	return h
}

// Validate checks one health check with its defaults applied, returning
// every problem at once, each naming its field ("status: is 700: want an
// HTTP status from 100 to 599").
func (h HealthCheck) Validate() error {
	var errs []error
	h.problems(func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}

// problems reports each problem of h to add, by field name.
func (h HealthCheck) problems(add func(field, format string, args ...any)) {
	if h.Path == "" {
		add("path", "required: the request path to check, like /health")
	} else if err := checkRequestPath("health check", h.Path); err != nil {
		add("path", "%v", err)
	}
	if h.Status < 100 || h.Status > 599 {
		add("status", "is %d: want an HTTP status from 100 to 599", h.Status)
	}
	if len(h.Body) > maxHealthBodyWant {
		add("body", "is %d bytes long: at most %d", len(h.Body), maxHealthBodyWant)
	}
	if h.Timeout <= 0 {
		add("timeout", "must be positive, like 5s (got %s)", h.Timeout)
	}
}

// healthDefaults gives every check of the file's health list the defaults
// of the fields it left out. A field the file set stays as set, so an
// explicit "status: 0" is refused by Validate rather than taken for 200.
func (c *Config) healthDefaults() {
	for i := range c.Health {
		h := &c.Health[i]
		key := fmt.Sprintf("health[%d].", i)
		if h.Status == 0 && c.lines[key+"status"] == 0 {
			h.Status = DefaultHealthStatus
		}
		if h.Timeout == 0 && c.lines[key+"timeout"] == 0 {
			h.Timeout = DefaultHealthTimeout
		}
	}
}

// validateHealth adds the problems of the health list and of
// warmup_failures.
func (c *Config) validateHealth(v *validator) {
	if len(c.Health) > MaxHealth {
		v.add("health", "lists %d checks: at most %d", len(c.Health), MaxHealth)
	}
	for i, h := range c.Health {
		item := fmt.Sprintf("health[%d]", i)
		h.problems(func(field, format string, args ...any) {
			key := item + "." + field
			line := v.lines[key]
			if line == 0 {
				line = v.lines[item] // a field left out: the check's own line
			}
			v.errs = append(v.errs, &problem{key: key, line: line, msg: fmt.Sprintf(format, args...)})
		})
	}
	if c.WarmupFailures != WarmupFailuresFail && c.WarmupFailures != WarmupFailuresWarn {
		v.add("warmup_failures", "%q: want fail (a warm-up answer of 404 or 5xx fails the deploy) or warn (it is only logged)", c.WarmupFailures)
	}
}
