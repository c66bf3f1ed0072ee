// configtest.go owns Test, php-fpm's own -t over the config a pool would
// start with: fpmux check runs it so that what php-fpm refuses (an unknown
// directive, a value of the wrong kind) is found before a deploy.

package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// testTimeout bounds php-fpm -t, which reads its config and exits.
const testTimeout = 30 * time.Second

// Test validates o, writes the php-fpm config a pool with o would start
// with into o.Dir (created, and removed after) and runs php-fpm -t on it,
// with o.Ini on the command line as Start passes it. The error holds every
// line php-fpm complained with.
func Test(ctx context.Context, o Options) error {
	p, conf, err := newPool(o)
	if err != nil {
		return err
	}
	if err := p.writeDir(conf); err != nil {
		return fmt.Errorf("test pool config: %w", err)
	}
	defer os.RemoveAll(p.o.Dir)
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	args := append([]string{"-t"}, p.args...)
	cmd := exec.CommandContext(ctx, p.binary, args...)
	cmd.Dir = p.o.Root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	if runErr == nil && strings.Contains(out.String(), "test is successful") {
		return nil
	}
	var complaints []error
	seen := map[string]bool{}
	confPath := filepath.Join(p.o.Dir, confName)
	lines := strings.Split(string(conf), "\n")
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "failed to load configuration file") {
			continue
		}
		// "[01-Dec-2026 23:04:41] ALERT: [pool r1] user has not been defined"
		if i := strings.Index(l, "] "); strings.HasPrefix(l, "[") && i > 0 {
			l = l[i+2:]
		}
		if l = strings.TrimSpace(l); l == "" || seen[l] || strings.Contains(l, "FPM initialization failed") {
			continue
		}
		seen[l] = true
		// "[/x/php-fpm.conf:21] unknown entry 'x'": the file is gone
		// when the operator reads this; say the line it held instead.
		if m := confLineRe.FindStringSubmatch(l); m != nil && m[1] == confPath {
			if n, _ := strconv.Atoi(m[2]); n >= 1 && n <= len(lines) {
				l = strings.Replace(l, m[0], "", 1) + " (at " + lines[n-1] + ")"
			}
		}
		complaints = append(complaints, errors.New(l))
	}
	if len(complaints) == 0 {
		complaints = append(complaints, fmt.Errorf("%v", runErr))
	}
	return fmt.Errorf("%s -t refuses the pool config of a sample release: %w", p.binary, errors.Join(complaints...))
}

var confLineRe = regexp.MustCompile(`\[(/[^:\]]+):(\d+)\] `)
