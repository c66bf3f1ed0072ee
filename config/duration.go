package config

// This file owns Duration, the YAML form of a time.Duration.

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as Go writes it: "60s",
// "1m30s", "500ms". A bare number has no unit and is refused.
type Duration time.Duration

// UnmarshalYAML reads a duration string. A bad value is reported as a
// yaml.TypeError naming the line, so Load can name the key and go on to
// report the file's other problems too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	bad := func(why string) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, why)}}
	}
	if n.Kind != yaml.ScalarNode {
		return bad("want a duration like 60s or 1m30s, not a " + kindName(n.Kind))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return bad(fmt.Sprintf("cannot parse %q as a duration: want a number with a unit, like 60s or 1m30s", n.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in the form UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration as time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// kindName names a YAML node kind for an error message.
func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	default:
		return "scalar"
	}
}
