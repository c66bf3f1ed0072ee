// This file owns the check that a script PHP is asked to run lies inside its
// release once symlinks are followed.

package fcgimux

import (
	"path/filepath"
	"strings"
	"sync"
)

// maxScriptVerdicts bounds the verdicts a scriptCheck remembers; when full
// it forgets them all and starts again, which costs a few path walks.
const maxScriptVerdicts = 8192

// scriptCheck refuses a path param (SCRIPT_FILENAME, PATH_TRANSLATED,
// DOCUMENT_ROOT: see confinePath) whose real path leaves the release root:
// a symlink inside a release (a shared uploads directory is the usual one)
// must not let PHP run a file that is not the release's own, such as a
// script a user uploaded. The lexical check (underDocroot) has already
// ruled out ".." and foreign prefixes; this one follows the links.
//
// Following them costs a system call per path segment, so verdicts are
// remembered per mapped path, which is sound because a release directory
// does not change once deployed.
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
// is a real path) resolves to a file inside root. A script that does not
// exist is judged by the deepest directory on its way that does: one in a
// directory outside the release (an uploads directory linked from it) is
// refused even while missing, so that a file appearing there later is not
// run on a remembered verdict; one in a directory of the release passes,
// and php-fpm answers it with its own 404.
func (sc *scriptCheck) check(path []byte, root string) (resolved string, ok bool) {
	sc.mu.RLock()
	v, known := sc.verdicts[string(path)]
	sc.mu.RUnlock()
	if known {
		return v.real, v.inside
	}
	v = verdict{inside: true}
	for p := string(path); len(p) > len(root); p = filepath.Dir(p) {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			v = verdict{real: real, inside: real == root || strings.HasPrefix(real, root) && real[len(root)] == '/'}
			break
		}
	}
	sc.mu.Lock()
	if sc.verdicts == nil || len(sc.verdicts) >= maxScriptVerdicts {
		sc.verdicts = make(map[string]verdict)
	}
	sc.verdicts[string(path)] = v
	sc.mu.Unlock()
	return v.real, v.inside
}
