// This file owns the check that a script PHP is asked to run lies inside its
// release once symlinks are followed.

package fcgimux

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"
)

// maxScriptVerdicts bounds the verdicts a scriptCheck remembers; when full
// it forgets them all and starts again, which costs a few path walks.
const maxScriptVerdicts = 8192

// scriptCheck refuses a SCRIPT_FILENAME whose real path leaves the release
// root: a symlink inside a release (a shared uploads directory is the usual
// one) must not let PHP run a file that is not the release's own, such as
// a script a user uploaded. The lexical check (underDocroot) has already
// ruled out ".." and foreign prefixes; this one follows the links.
//
// Following them costs a system call per path segment, so verdicts are
// remembered per mapped path. That is sound because a release directory
// does not change once deployed; what does not exist yet is not remembered,
// so a file that appears later is looked at when it is asked for.
type scriptCheck struct {
	mu       sync.RWMutex
	verdicts map[string]verdict // by mapped script path
}

// verdict is what a script path resolved to, and whether that lies inside
// its release root.
type verdict struct {
	real   string
	inside bool
}

// check tells whether the script at path (already mapped under root, which
// is a real path) resolves to a file inside root. A path that cannot be
// resolved (missing, or not a directory on the way) passes: php-fpm
// answers it with its own 404, and there is nothing for it to run.
func (sc *scriptCheck) check(path []byte, root string) (resolved string, ok bool) {
	sc.mu.RLock()
	v, known := sc.verdicts[string(path)]
	sc.mu.RUnlock()
	if known {
		return v.real, v.inside
	}
	real, err := filepath.EvalSymlinks(string(path))
	if err != nil {
		return "", true
	}
	v = verdict{real: real, inside: real == root || strings.HasPrefix(real, root) && real[len(root)] == '/'}
	sc.mu.Lock()
	if sc.verdicts == nil || len(sc.verdicts) >= maxScriptVerdicts {
		sc.verdicts = make(map[string]verdict)
	}
	sc.verdicts[string(path)] = v
	sc.mu.Unlock()
	return real, v.inside
}

// scriptParam returns the value of SCRIPT_FILENAME in encoded pairs, or nil.
func scriptParam(pairs []byte) []byte {
	var script []byte
	eachPair(pairs, func(name, value []byte) error {
		if bytes.Equal(name, []byte("SCRIPT_FILENAME")) {
			script = value
			return errStop
		}
		return nil
	})
	return script
}
