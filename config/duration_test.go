package config

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"d: 60s", 60 * time.Second, ""},
		{"d: 1m30s", 90 * time.Second, ""},
		{`d: "250ms"`, 250 * time.Millisecond, ""},
		{"d: -5s", -5 * time.Second, ""}, // Validate refuses it, with its key
		{"d: 60", 0, `line 1: cannot parse "60" as a duration`},
		{"d: soon", 0, `line 1: cannot parse "soon" as a duration`},
		{"\nd: [1s]", 0, "line 2: want a duration like 60s or 1m30s, not a list"},
	}
	for _, tt := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte(tt.in), &v)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: err = %v, want %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: err = %v", tt.in, err)
		case time.Duration(v.D) != tt.want:
			t.Errorf("%q: got %v, want %v", tt.in, time.Duration(v.D), tt.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	in := struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "d: 1m30s\n" {
		t.Errorf("Marshal = %q, want %q", out, "d: 1m30s\n")
	}
	var back struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil || back.D != in.D {
		t.Errorf("round trip = %v, %v; want %v", back.D, err, in.D)
	}
}
