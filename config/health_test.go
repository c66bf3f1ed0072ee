package config

import (
	"strings"
	"testing"
	"time"
)

func TestHealthCheckDefaultsAndValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		in   HealthCheck
		want HealthCheck // after WithDefaults
		errs []string    // Validate's problems, in order; nil: valid
	}{
		{"path alone", HealthCheck{Path: "/health"},
			HealthCheck{Path: "/health", Status: 200, Timeout: Duration(5 * time.Second)}, nil},
		{"all set", HealthCheck{Path: "/x?y=1", Status: 204, Body: "ok", Timeout: Duration(time.Second)},
			HealthCheck{Path: "/x?y=1", Status: 204, Body: "ok", Timeout: Duration(time.Second)}, nil},
		{"no path", HealthCheck{}, HealthCheck{Status: 200, Timeout: Duration(5 * time.Second)},
			[]string{"path: required"}},
		{"relative path", HealthCheck{Path: "health"}, HealthCheck{Path: "health", Status: 200, Timeout: Duration(5 * time.Second)},
			[]string{`path: health check path "health" must start with '/'`}},
		{"path with a space", HealthCheck{Path: "/a b"}, HealthCheck{Path: "/a b", Status: 200, Timeout: Duration(5 * time.Second)},
			[]string{"path: health check path \"/a b\" holds a space"}},
		{"bad status and timeout", HealthCheck{Path: "/", Status: 99, Timeout: Duration(-time.Second)},
			HealthCheck{Path: "/", Status: 99, Timeout: Duration(-time.Second)},
			[]string{"status: is 99: want an HTTP status from 100 to 599", "timeout: must be positive"}},
		{"long body", HealthCheck{Path: "/", Body: strings.Repeat("x", 4097)},
			HealthCheck{Path: "/", Body: strings.Repeat("x", 4097), Status: 200, Timeout: Duration(5 * time.Second)},
			[]string{"body: is 4097 bytes long: at most 4096"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.in.WithDefaults()
			if got != c.want {
				t.Errorf("WithDefaults() = %+v, want %+v", got, c.want)
			}
			err := got.Validate()
			var msgs []string
			if err != nil {
				msgs = strings.Split(err.Error(), "\n")
			}
			if len(msgs) != len(c.errs) {
				t.Fatalf("Validate() = %v, want %d problems %q", err, len(c.errs), c.errs)
			}
			for i, m := range msgs {
				if !strings.HasPrefix(m, c.errs[i]) {
					t.Errorf("problem %d = %q, want it to start %q", i, m, c.errs[i])
				}
			}
		})
	}
}

func TestValidateHealthList(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"none", func(c *Config) { c.Health = nil }, ""},
		{"one", func(c *Config) { c.Health = []HealthCheck{HealthCheck{Path: "/"}.WithDefaults()} }, ""},
		{"too many", func(c *Config) { c.Health = make([]HealthCheck, MaxHealth+1) }, "health: lists 21 checks: at most 20"},
		{"a bad one names its index", func(c *Config) {
			c.Health = []HealthCheck{HealthCheck{Path: "/"}.WithDefaults(), {Path: "/x", Status: 1000, Timeout: 1}}
		}, "health[1].status: is 1000"},
		{"warn", func(c *Config) { c.WarmupFailures = "warn" }, ""},
		{"empty warmup_failures", func(c *Config) { c.WarmupFailures = "" }, `warmup_failures: "": want fail`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.change(cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
}
