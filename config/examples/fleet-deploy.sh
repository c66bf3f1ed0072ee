#!/bin/sh
# fleet-deploy.sh: switch a fleet of fpmux hosts to a new release in two
# phases. First every host prepares it (its pool started and health-checked,
# no traffic); only when all of them have, the hosts switch, BATCH at a time.
# A host that cannot prepare stops the deploy before any host switched; a
# host that cannot switch rolls back the hosts switched so far.
#
#   BATCH=2 fleet-deploy.sh ID ROOT HOST...
#
# The release must already be in ROOT on every host (rsync, a package, ...).
#
# Environment:
#   BATCH   hosts switched at once (default 1)
#   ADMIN   fpmux's admin address on each host (default unix:/run/fpmux/admin.sock)
#   REMOTE  runs a command on a host: called as `$REMOTE HOST fpmux ...`
#           (default ssh)
#   FPMUX   the fpmux command on the hosts (default fpmux)
#   FPMUX_ADMIN_TOKEN is passed on by fpmux itself when REMOTE keeps the
#           environment; with ssh, set it on the hosts instead.
# ADMIN and ROOT may hold {host}, replaced by each host's name.
set -eu

[ $# -ge 3 ] || { echo "usage: fleet-deploy.sh ID ROOT HOST..." >&2; exit 2; }
id=$1 root=$2
shift 2
BATCH=${BATCH:-1}
ADMIN=${ADMIN:-unix:/run/fpmux/admin.sock}
REMOTE=${REMOTE:-ssh}
FPMUX=${FPMUX:-fpmux}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# on HOST CMD ARGS...: runs fpmux CMD on HOST with its admin address.
on() {
	host=$1 cmd=$2
	shift 2
	$REMOTE "$host" "$FPMUX" "$cmd" -admin "$(echo "$ADMIN" | sed "s|{host}|$host|g")" "$@"
}

# key HOST: a file name for HOST's results.
key() { echo "$tmp/$(echo "$1" | tr -c 'A-Za-z0-9._\n-' '_')"; }

# Phase 1: prepare on every host at once.
for host in "$@"; do
	(
		if on "$host" deploy -no-activate -id "$id" -root "$(echo "$root" | sed "s|{host}|$host|g")" \
			>"$(key "$host").out" 2>&1; then
			touch "$(key "$host").ready"
		fi
	) &
done
wait
failed=0
for host in "$@"; do
	if [ ! -e "$(key "$host").ready" ]; then
		echo "prepare failed on $host: $(cat "$(key "$host").out")" >&2
		failed=1
	fi
done
if [ "$failed" = 1 ]; then
	for host in "$@"; do
		[ -e "$(key "$host").ready" ] && on "$host" retire "$id" >/dev/null 2>&1 || true
	done
	echo "release $id prepared on no host; nothing switched" >&2
	exit 1
fi
echo "release $id ready on $# hosts"

# Phase 2: switch, BATCH hosts at a time. Activation is a pointer swap on
# each host, so a batch takes about one round trip.
switched=""
set -- "$@" ""
while [ -n "$1" ]; do
	batch=""
	n=0
	while [ -n "$1" ] && [ "$n" -lt "$BATCH" ]; do
		batch="$batch $1"
		n=$((n + 1))
		shift
	done
	for host in $batch; do
		(on "$host" activate "$id" >"$(key "$host").out" 2>&1 || echo >"$(key "$host").failed") &
	done
	wait
	bad=""
	for host in $batch; do
		if [ -e "$(key "$host").failed" ]; then
			echo "activate failed on $host: $(cat "$(key "$host").out")" >&2
			bad="$bad $host"
		else
			switched="$switched $host"
		fi
	done
	if [ -n "$bad" ]; then
		echo "rolling back:$switched" >&2
		for back in $switched; do
			on "$back" rollback >/dev/null 2>&1 || echo "rollback failed on $back" >&2
		done
		exit 1
	fi
	echo "switched:$switched"
done
