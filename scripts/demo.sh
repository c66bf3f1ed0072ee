#!/usr/bin/env bash
# fpmux demo: two releases behind nginx, switched under load.
#
#   sudo bash scripts/demo.sh
#
# On a Debian/Ubuntu box with Go: installs php-fpm 8.2 and nginx-light when
# missing, builds bin/fpmux, runs it on its embedded defaults (no config file),
# puts nginx in front on 127.0.0.1:8080, deploys testdata/demo/demo-1, then
# deploys demo-2 while requests keep coming, and counts who answered them.
# Everything it starts is stopped on exit; logs stay in a temp directory.
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

# fpmux keeps its state in /var/lib/fpmux. A previous demo run's state would
# bring back demo-1 and demo-2; anything else there is not ours to touch.
if [[ -e $DEMO_MARK ]]; then
    rm -rf "$STATE_DIR"
elif [[ -d $STATE_DIR && -n $(ls -A "$STATE_DIR") ]]; then
    die "$STATE_DIR holds another fpmux's state; the demo will not touch it"
fi
mkdir -p "$STATE_DIR" /run/fpmux
touch "$DEMO_MARK"

# --- releases -------------------------------------------------------------
step "copying the demo releases to $RELEASES"
mkdir -p "$RELEASES"
for id in demo-1 demo-2; do
    rm -rf "${RELEASES:?}/$id"
    cp -r "testdata/demo/$id" "$RELEASES/$id"
    chmod -R a+rX "$RELEASES/$id"
    say "$RELEASES/$id: $(find "$RELEASES/$id" -type f | wc -l) files"
done

# --- fpmux and nginx ------------------------------------------------------
TMP=$(mktemp -d /tmp/fpmux-demo.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody
FPMUX_PID=
NGINX_PID=
LOAD_PIDS=()
POOL_PIDS=()

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
        say "fpmux: SIGTERM (it drains and stops its php-fpm masters)"
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
    # Give php-fpm children a moment to follow their master out.
    local left=""
    for _ in $(seq 1 30); do
        left=$(
            pgrep -af "php-fpm.*$STATE_DIR"
            for pid in "${POOL_PIDS[@]}"; do
                kill -0 "$pid" 2>/dev/null && ps -o pid=,args= -p "$pid"
            done
        )
        [[ -z $left ]] && break
        sleep 0.1
    done
    if [[ -n $left ]]; then
        say "php-fpm processes LEFT BEHIND:"
        printf '%s\n' "$left" | sort -u | sed 's/^/      /'
        rc=1
    elif [[ -n $FPMUX_PID ]]; then
        say "no php-fpm from $STATE_DIR is left running"
    fi
    say "logs: $TMP/fpmux.log, $TMP/nginx-error.log, $TMP/access.log"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting fpmux on its embedded defaults (no config file)"
say "FastCGI 127.0.0.1:9700, admin unix:/run/fpmux/admin.sock, docroot /var/www/app/current"
"$FPMUX" serve >"$TMP/fpmux.log" 2>&1 &
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
nginx -p "$TMP" -c "$TMP/nginx.conf" &
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

remember_pools() {
    local pid
    for pid in $("$FPMUX" status -json | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$' || true); do
        POOL_PIDS+=("$pid" $(pgrep -P "$pid" || true))
    done
}

# --- deploy demo-1 --------------------------------------------------------
step "fpmux deploy -id demo-1 -root $RELEASES/demo-1"
"$FPMUX" deploy -id demo-1 -root "$RELEASES/demo-1"
remember_pools

step "curl $URL"
curl -sS "$URL" | sed 's/^/    /'

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

step "sending requests for ${LOAD_SECONDS}s from $WORKERS parallel curl loops"
for w in $(seq 1 "$WORKERS"); do
    load_worker >"$TMP/load-$w.txt" &
    LOAD_PIDS+=($!)
done
sleep 5

step "fpmux deploy -id demo-2 -root $RELEASES/demo-2 (while the requests run)"
"$FPMUX" deploy -id demo-2 -root "$RELEASES/demo-2"
remember_pools

step "fpmux status"
"$FPMUX" status | sed 's/^/    /'

say "waiting for the load to finish"
wait "${LOAD_PIDS[@]}" || true
LOAD_PIDS=()

step "requests per release"
total=$(cat "$TMP"/load-*.txt | wc -l)
cat "$TMP"/load-*.txt | sort | uniq -c | sed 's/^ */    /'
failed=$(cat "$TMP"/load-*.txt | grep -c -v '^demo-[12]$' || true)
say "total $total, failed $failed"

step "curl $URL"
curl -sS "$URL" | sed 's/^/    /'

step "fpmux status"
"$FPMUX" status | sed 's/^/    /'

if ((failed > 0)); then
    say "some requests failed: see $TMP/fpmux.log and $TMP/nginx-error.log"
    exit 1
fi
