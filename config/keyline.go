package config

// This file owns telling a caller outside this package where a key was
// set, so a problem found later (a missing directory, found by fpmux
// check) names the line to change as Validate's own problems do.

// KeyLine returns the line of the file Load read key from ("docroot",
// "allowed_roots[1]", "php_fpm.binary"), or 0 when key was not in the file
// (its default applies) or c was not read from a file.
func (c *Config) KeyLine(key string) int {
	return c.lines[key]
}
