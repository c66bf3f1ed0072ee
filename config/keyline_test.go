package config

import "testing"

func TestKeyLine(t *testing.T) {
	full, err := Load("testdata/good-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *Config
		key  string
		want int
	}{
		{full, "docroot", 6},
		{full, "allowed_roots[1]", 9},
		{full, "php_fpm.binary", 12},
		{full, "no_such_key", 0},
		{Default(), "docroot", 0}, // not read from a file
	} {
		if got := tc.c.KeyLine(tc.key); got != tc.want {
			t.Errorf("KeyLine(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}
