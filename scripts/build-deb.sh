#!/usr/bin/env bash
# Builds fpmux's Debian package from this source tree:
#
#   scripts/build-deb.sh [-o OUTDIR] [-v VERSION] [-a ARCH]
#
# writes OUTDIR/fpmux_<VERSION>_<ARCH>.deb (OUTDIR: dist/) and prints its
# path. VERSION defaults to 0.0~git<commit date>.<commit>-1 (+dirty before
# the -1 when the tree has uncommitted changes): the project tags no
# releases yet. ARCH defaults to dpkg's architecture. Needs Go, git,
# dpkg-deb and gzip; no root (dpkg-deb --root-owner-group).
#
# The package holds the daemon only, /usr/bin/fpmux: fpmux-bench measures
# fpmux against php-fpm from a source tree (its workloads and releases are
# the tree's testdata), so it stays a developer's tool. Sources of the rest:
# packaging/deb/ (control, maintainer scripts, units, man page, copyright),
# config/examples/fpmux.yaml (the conffile /etc/fpmux/fpmux.yaml, with
# listen set to fpmux.socket's path).
#
# The version reaches `fpmux version` through -ldflags -X main.version, and
# the commit through -X main.buildCommit: Go records no version control
# information in a git worktree, so the build does not rely on it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

out=dist version= arch=
while getopts 'o:v:a:' opt; do
    case $opt in
    o) out=$OPTARG ;;
    v) version=$OPTARG ;;
    a) arch=$OPTARG ;;
    *)
        echo "usage: scripts/build-deb.sh [-o OUTDIR] [-v VERSION] [-a ARCH]" >&2
        exit 2
        ;;
    esac
done

# A checkout owned by another user than the one building (CI building as
# root) is still this tree: git would refuse it as "dubious ownership".
git() { command git -c safe.directory="$PWD" "$@"; }

commit=$(git rev-parse HEAD)
# The commit's date, not the clock's: two builds of one commit are alike.
epoch=$(git log -1 --format=%ct)
if [[ -z $version ]]; then
    dirty=
    git diff --quiet HEAD -- 2>/dev/null || dirty=+dirty
    version="0.0~git$(date -u -d "@$epoch" +%Y%m%d).${commit:0:12}$dirty-1"
fi
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || {
    echo "build-deb: version $version is not a Debian version" >&2
    exit 2
}
arch=${arch:-$(dpkg --print-architecture)}
case $arch in
amd64 | arm64 | s390x | riscv64) goarch=$arch ;;
i386) goarch=386 ;;
armhf) goarch=arm ;;
ppc64el) goarch=ppc64le ;;
*)
    echo "build-deb: no Go architecture for $arch" >&2
    exit 2
    ;;
esac
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>')}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
src=packaging/deb
install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/fpmux" "$root/lib/systemd/system" \
    "$root/usr/share/man/man8" "$root/usr/share/doc/fpmux/examples"

# A static binary (no cgo: it needs no libc, and runs in any root),
# position independent and without symbol tables, as lintian asks.
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=7 go build -trimpath -buildmode=pie -buildvcs=false \
    -ldflags "-s -w -X main.version=$version -X main.buildCommit=$commit" \
    -o "$root/usr/bin/fpmux" ./cmd/fpmux

# /etc/fpmux/fpmux.yaml: the documented example, listening where
# fpmux.socket does (the passed socket wins anyway; the file says so).
sed -E 's|^listen: 127\.0\.0\.1:9700 .*$|listen: unix:/run/fpmux/fpmux.sock     # fpmux.socket passes this socket|' \
    config/examples/fpmux.yaml >"$root/etc/fpmux/fpmux.yaml"
grep -q '^listen: unix:/run/fpmux/fpmux.sock ' "$root/etc/fpmux/fpmux.yaml" || {
    echo "build-deb: config/examples/fpmux.yaml has no 'listen: 127.0.0.1:9700 ...' line to point at fpmux.socket" >&2
    exit 1
}
chmod 644 "$root/etc/fpmux/fpmux.yaml"

install -m 644 "$src"/units/* "$root/lib/systemd/system/"
gzip -9n <"$src/fpmux.8" >"$root/usr/share/man/man8/fpmux.8.gz"
install -m 644 "$src/copyright" "$root/usr/share/doc/fpmux/copyright"
install -m 644 config/examples/nginx.conf config/examples/apache.conf "$root/usr/share/doc/fpmux/examples/"
install -m 644 "$src/app.yaml" "$root/usr/share/doc/fpmux/examples/app.yaml"
{
    printf 'fpmux (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from fpmux commit %s.\n\n' "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$epoch")"
} | gzip -9n >"$root/usr/share/doc/fpmux/changelog.Debian.gz"
chmod 644 "$root/usr/share/man/man8/fpmux.8.gz" "$root/usr/share/doc/fpmux/changelog.Debian.gz"

install -m 755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
install -m 644 "$src/conffiles" "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$size|" "$src/control" >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 755 {} +
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$out"
deb="$out/fpmux_${version}_${arch}.deb"
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
