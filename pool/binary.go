// binary.go owns finding the php-fpm executable.

package pool

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

var versionedRe = regexp.MustCompile(`^php-fpm([0-9]+)\.([0-9]+)$`)

// FindBinary returns the php-fpm to run: "php-fpm" on PATH or in /usr/sbin,
// else the php-fpmX.Y with the highest version there (Debian and Ubuntu
// install only the versioned name).
func FindBinary() (string, error) {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	dirs = append(dirs, "/usr/sbin")
	return findBinary(dirs)
}

func findBinary(dirs []string) (string, error) {
	seen := map[string]bool{}
	var uniq []string
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(d) || seen[d] {
			continue
		}
		seen[d] = true
		uniq = append(uniq, d)
	}
	for _, d := range uniq {
		if p := filepath.Join(d, "php-fpm"); isExecutable(p) {
			return p, nil
		}
	}
	best, bestMajor, bestMinor := "", -1, -1
	for _, d := range uniq {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			m := versionedRe.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			major, _ := strconv.Atoi(m[1])
			minor, _ := strconv.Atoi(m[2])
			p := filepath.Join(d, e.Name())
			if (major > bestMajor || major == bestMajor && minor > bestMinor) && isExecutable(p) {
				best, bestMajor, bestMinor = p, major, minor
			}
		}
	}
	if best == "" {
		return "", errors.New("find php-fpm: no php-fpm or php-fpmX.Y on PATH or in /usr/sbin")
	}
	return best, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
