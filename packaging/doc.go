// Package packaging holds no code fpmux runs: its tests build fpmux's
// Debian package with scripts/build-deb.sh from packaging/deb/, run lintian
// on it, install it into a throwaway root with dpkg, run the installed
// fpmux there, have systemd-analyze verify the installed units, and keep
// the packaged units alike with config/examples/.
package packaging
