#!/usr/bin/env bash
# fpmux demo: two releases behind nginx, switched under load.
#
#   sudo bash scripts/demo.sh
#
# On a Debian/Ubuntu box with Go: installs php-fpm 8.2 and nginx-light when
# missing, builds bin/fpmux, runs it on its embedded defaults (no config file),
# puts nginx in front on 127.0.0.1:8080, deploys testdata/demo/demo-1, then
# deploys demo-2 while requests keep coming, and counts who answered them.
# Everything it starts is stopped on exit, and what it created under
# /var/www/app, /var/lib/fpmux and /run/fpmux is removed; logs stay in a temp
# directory. It exits 0 only if every request got a whole page of one release.
#
# Environment: DEMO_PORT (nginx, default 8080), DEMO_SECONDS (load, default 20),
# DEMO_WORKERS (parallel curl loops, default 4).
set -euo pipefail

PORT=${DEMO_PORT:-8080}
LOAD_SECONDS=${DEMO_SECONDS:-20}
WORKERS=${DEMO_WORKERS:-4}
RELEASES=/var/www/app/releases
STATE_DIR=/var/lib/fpmux
DEMO_MARK=/var/lib/fpmux.demo # says STATE_DIR was made by this demo
FPMUX=bin/fpmux

step() { printf '\n==> %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
die() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"

[[ $EUID -eq 0 ]] || die "run as root: sudo bash scripts/demo.sh"
command -v go >/dev/null 2>&1 || die "Go is needed to build fpmux (https://go.dev/dl/)"

# --- prerequisites --------------------------------------------------------
step "checking php-fpm 8.2, nginx and curl"
need=()
command -v php-fpm8.2 >/dev/null 2>&1 || need+=(php8.2-fpm)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v curl >/dev/null 2>&1 || need+=(curl)
for pkg in php8.2-opcache php8.2-apcu; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]} > 0)); then
    say "installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
say "$(php-fpm8.2 -v | head -n 1)"
say "$(nginx -v 2>&1)"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy 9700 && die "127.0.0.1:9700 is taken (another fpmux or php-fpm?); the demo needs it"
port_busy "$PORT" && die "127.0.0.1:$PORT is taken; set DEMO_PORT to a free port"

step "building $FPMUX"
go build -o "$FPMUX" ./cmd/fpmux
"$FPMUX" status >/dev/null 2>&1 && die "an fpmux already answers on unix:/run/fpmux/admin.sock; stop it first"

# --- what the demo creates, and removes again ------------------------------
# fpmux keeps its state in /var/lib/fpmux and restores the active release from
# it at start; the releases live in /var/www/app/releases. The demo creates
# whatever of these is missing, lists it in $DEMO_MARK, and removes it on
# exit. A mark left by an interrupted run names paths of that run: they go
# first, so that fpmux does not bring back its releases.
ours() { # is $1 a path the demo may create and remove?
    case $1 in
    /var/www | /var/www/app | "$RELEASES" | "$RELEASES"/demo-[12] | "$STATE_DIR" | /run/fpmux) return 0 ;;
    *) return 1 ;;
    esac
}
remove_ours() {
    local path
    while read -r path; do
        ours "$path" && rm -rf "$path"
    done <"$DEMO_MARK"
    rm -f "$DEMO_MARK"
}
# highest missing directory on the way to $1 (empty if $1 exists)
first_missing() {
    local p=$1 top=
    while [[ ! -e $p ]]; do
        top=$p
        p=$(dirname "$p")
    done
    printf '%s\n' "$top"
}

if [[ -e $DEMO_MARK ]]; then
    say "removing what an interrupted demo run left: $(tr '\n' ' ' <"$DEMO_MARK")"
    remove_ours
fi
if [[ -d $STATE_DIR && -n $(ls -A "$STATE_DIR") ]]; then
    die "$STATE_DIR holds another fpmux's state; the demo will not touch it"
fi
{
    first_missing "$STATE_DIR"
    first_missing /run/fpmux
    top=$(first_missing "$RELEASES")
    if [[ -n $top ]]; then echo "$top"; else printf '%s\n' "$RELEASES"/demo-{1,2}; fi
} | sed '/^$/d' >"$DEMO_MARK"
mkdir -p "$STATE_DIR" /run/fpmux

TMP=$(mktemp -d /tmp/fpmux-demo.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody
FPMUX_PID=
NGINX_PID=
LOAD_PIDS=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    step "stopping everything"
    for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID"
        wait "$NGINX_PID" 2>/dev/null
        say "nginx stopped"
    fi
    if [[ -n $FPMUX_PID ]] && kill -0 "$FPMUX_PID" 2>/dev/null; then
        say "fpmux: SIGTERM (it finishes in-flight requests and stops its php-fpm masters)"
        kill -TERM "$FPMUX_PID"
        for _ in $(seq 1 300); do
            kill -0 "$FPMUX_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FPMUX_PID" 2>/dev/null; then
            say "fpmux still running after 30s: SIGKILL"
            kill -KILL "$FPMUX_PID"
            rc=1
        fi
        wait "$FPMUX_PID" 2>/dev/null
        say "fpmux exited with status $?"
    fi
    # Masters run with their config under $STATE_DIR; workers are named
    # after the pool, i.e. the release. Give workers a moment to follow.
    local left=""
    for _ in $(seq 1 30); do
        left=$(pgrep -a 'php-fpm' | grep -E "\($STATE_DIR/|pool demo-[12]\$" || true)
        [[ -z $left ]] && break
        sleep 0.1
    done
    if [[ -n $left ]]; then
        say "php-fpm processes LEFT BEHIND (state kept in $STATE_DIR):"
        printf '%s\n' "$left" | sed 's/^/      /'
        rc=1
    else
        [[ -n $FPMUX_PID ]] && say "no php-fpm of the demo is left running"
        say "removing $(tr '\n' ' ' <"$DEMO_MARK")"
        remove_ours
    fi
    say "logs: $TMP/fpmux.log, $TMP/nginx-error.log, $TMP/access.log"
    ((rc == 0)) && say "demo done in ${SECONDS}s"
    exit "$rc"
}
trap cleanup EXIT
trap 'printf "\n    interrupted\n"; exit 130' INT TERM

# --- releases -------------------------------------------------------------
step "copying the demo releases to $RELEASES"
mkdir -p "$RELEASES"
for id in demo-1 demo-2; do
    rm -rf "${RELEASES:?}/$id"
    # Keep the files' times: php-fpm's opcache skips files younger than 2s.
    cp -r --preserve=timestamps "testdata/demo/$id" "$RELEASES/$id"
    chmod -R a+rX "$RELEASES/$id"
    say "$RELEASES/$id: $(find "$RELEASES/$id" -type f | wc -l) files"
done

# --- fpmux and nginx ------------------------------------------------------
step "starting fpmux on its embedded defaults (no config file)"
say "FastCGI 127.0.0.1:9700, admin unix:/run/fpmux/admin.sock, docroot /var/www/app/current"
# fpmux and nginx get a session of their own, so that a Ctrl-C reaches only
# this script, which then stops them in order (nginx first, then fpmux).
setsid "$FPMUX" serve >"$TMP/fpmux.log" 2>&1 &
FPMUX_PID=$!
for i in $(seq 1 100); do
    "$FPMUX" status >/dev/null 2>&1 && break
    kill -0 "$FPMUX_PID" 2>/dev/null || {
        tail -n 20 "$TMP/fpmux.log" >&2
        die "fpmux serve exited; its log is above"
    }
    ((i < 100)) || die "fpmux did not answer on its admin socket within 10s"
    sleep 0.1
done
say "fpmux is up (pid $FPMUX_PID)"

step "starting nginx on 127.0.0.1:$PORT (config in $TMP)"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events {}
http {
    access_log $TMP/access.log;
    client_body_temp_path $TMP/client_body;
    fastcgi_temp_path $TMP/fastcgi;
    proxy_temp_path $TMP/proxy;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;

    upstream fpmux {
        server 127.0.0.1:9700;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$PORT;
        # fpmux's docroot. It does not have to exist: fpmux maps it onto the
        # active release's real root for every request.
        root /var/www/app/current;
        index index.php;
        location / {
            try_files \$uri /index.php?\$query_string;
        }
        location ~ \.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_pass fpmux;
            fastcgi_keep_conn on;
        }
    }
}
EOF
nginx -t -q -p "$TMP" -c "$TMP/nginx.conf"
setsid nginx -p "$TMP" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for i in $(seq 1 50); do
    port_busy "$PORT" && break
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited; see $TMP/nginx-error.log"
    ((i < 50)) || die "nginx did not listen on $PORT within 5s"
    sleep 0.1
done
URL="http://127.0.0.1:$PORT/index.php"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL")
say "nginx is up; before any deploy, $URL answers HTTP $code (no active release)"

indent() { sed 's/^/    /'; }

# --- deploy demo-1 --------------------------------------------------------
step "fpmux deploy -id demo-1 -root $RELEASES/demo-1"
"$FPMUX" deploy -id demo-1 -root "$RELEASES/demo-1" | indent

step "curl $URL"
curl -sS "$URL" | indent

# --- load, and deploy demo-2 in the middle of it --------------------------
# Each worker requests the page (held 100 ms by PHP) until the deadline and
# writes one line per request: the release that answered, MIXED if a page saw
# files of two releases, or FAILED and the HTTP status.
load_worker() {
    local end=$(($(date +%s) + LOAD_SECONDS)) out code body release
    while (($(date +%s) < end)); do
        out=$(curl -sS --max-time 10 -w '\n%{http_code}' "$URL?sleep_ms=100" 2>/dev/null) || out=$'\n000'
        code=${out##*$'\n'}
        body=${out%$'\n'*}
        release=$(sed -n 's/^release: //p' <<<"$body")
        if [[ $code != 200 || -z $release ]]; then
            echo "FAILED(HTTP $code)"
        elif ! grep -qx 'consistent: yes' <<<"$body"; then
            echo "MIXED($release)"
        else
            echo "$release"
        fi
    done
}

step "sending requests for ${LOAD_SECONDS}s from $WORKERS parallel curl loops (each held 100ms by PHP)"
for w in $(seq 1 "$WORKERS"); do
    load_worker >"$TMP/load-$w.txt" &
    LOAD_PIDS+=($!)
done
sleep $((LOAD_SECONDS >= 8 ? LOAD_SECONDS / 4 : 2))

step "fpmux deploy -id demo-2 -root $RELEASES/demo-2 (while the requests run)"
"$FPMUX" deploy -id demo-2 -root "$RELEASES/demo-2" | indent

# Right after the switch: php-fpm answers fpmux's status request on a
# socket of its own (pm.status_listen), not behind the load.
step "fpmux status"
"$FPMUX" status | indent

say "waiting for the load to finish"
wait "${LOAD_PIDS[@]}" || true
LOAD_PIDS=()

step "the switch, as fpmux logged it"
grep -E 'msg="(release (starting|ready|active|retired)|stopping php-fpm gracefully)"' "$TMP/fpmux.log" |
    sed -E 's/^time=[0-9-]+T([0-9:.]+)Z level=[A-Z]+ msg=/\1 /' | indent

step "requests per release"
cat "$TMP"/load-*.txt >"$TMP/load.txt"
sort "$TMP/load.txt" | uniq -c | sed 's/^ */    /'
count() { grep -c "$1" "$TMP/load.txt" || true; }
total=$(wc -l <"$TMP/load.txt")
old=$(count '^demo-1$')
new=$(count '^demo-2$')
failed=$(count '^FAILED')
mixed=$(count '^MIXED')
say "total $total: demo-1 $old, demo-2 $new, failed $failed, mixed $mixed"

step "curl $URL"
curl -sS "$URL" | indent

# fpmux counts workers from php-fpm's per-process list, up to date when
# read: a worker waiting on one of fpmux's idle kept connections is idle.
step "fpmux status"
"$FPMUX" status | indent

if ((failed + mixed > 0)); then
    say "some requests failed or saw two releases: see $TMP/fpmux.log and $TMP/nginx-error.log"
    exit 1
fi
if ((old == 0 || new == 0)); then
    say "the switch did not happen under load (demo-1 $old, demo-2 $new requests)"
    exit 1
fi
