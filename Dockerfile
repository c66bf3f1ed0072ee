# fpmux with Debian bookworm's php-fpm 8.2: one image, one fpmux, one
# php-fpm master per deployed release.
#
#   docker build -t fpmux .
#   docker network create app
#   docker run -d --name fpmux --network app --stop-timeout 70 \
#       -v fpmux-state:/var/lib/fpmux -v /srv/app/releases:/var/www/app/releases \
#       -p 127.0.0.1:9701:9701 fpmux
#   docker exec fpmux fpmux deploy -id r1 -root /var/www/app/releases/r1
#
# An nginx container on the same network passes PHP to fpmux:9700 with its
# root set to /var/www/app/current (fpmux's docroot). config/examples/docker/
# has that nginx.conf, a compose.yaml and the commands in full.

# Build stage: the Go version is go.mod's, exactly. The golang image sets
# GOTOOLCHAIN=local, so an older Go here would refuse to build.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static, so the runtime stage needs no Go or C libraries for fpmux.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fpmux ./cmd/fpmux

FROM debian:bookworm-slim
# php8.2-fpm brings php8.2-cli along (a dependency), which the HEALTHCHECK
# below uses. tini is PID 1: php-fpm workers whose master died are killed by
# fpmux and then reparented to PID 1, and tini reaps them; fpmux does not
# reap processes it did not start.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        php8.2-fpm php8.2-opcache php8.2-apcu tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/fpmux /var/lib/fpmux /var/www/app/releases
COPY --from=build /out/fpmux /usr/local/bin/fpmux

# state.json (the active release and the ones before it) and the pools'
# generated configs and sockets. Kept across container restarts, so a new
# container starts and activates the release that was active before.
VOLUME /var/lib/fpmux
# Release trees, each under its own id. fpmux only accepts roots in here
# (allowed_roots). The web server's container mounts the same volume
# read-only for static files.
VOLUME /var/www/app/releases

# 9700: FastCGI for the web server. 9701: Prometheus /metrics.
# The admin API stays on the unix socket /run/fpmux/admin.sock inside the
# container: use it with `docker exec fpmux fpmux status|deploy|...`.
EXPOSE 9700 9701

# GET /v1/healthz over the admin socket answers 200 while an active release
# serves, else 503. So a container is unhealthy until its first deploy, and
# healthy right after a restart once state.json's release is active again.
# fpmux has no health subcommand (`fpmux status` succeeds with no release at
# all), and curl would add about 10 MB, so this is php's CLI, which is here
# anyway: one HTTP/1.0 request on the socket, healthy if the status is 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD php -n -r '$s = @stream_socket_client("unix:///run/fpmux/admin.sock", $errno, $err, 2); if (!$s) exit(1); stream_set_timeout($s, 2); fwrite($s, "GET /v1/healthz HTTP/1.0\r\nHost: fpmux\r\n\r\n"); $l = explode(" ", (string) fgets($s)); exit(($l[1] ?? "") === "200" ? 0 : 1);'

# fpmux runs as root to start one php-fpm master per release; the PHP
# workers run as www-data, which must be able to read the release trees.
# SIGTERM stops fpmux in order: admin API, then new connections, then
# in-flight requests finish (up to drain_timeout, 60 s by default), then
# every php-fpm master stops. Give `docker stop` more than that
# (--stop-timeout 70, or stop_grace_period in compose); Docker's default
# of 10 s would SIGKILL long requests.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "fpmux"]
# The defaults (admin socket, /var/lib/fpmux, docroot /var/www/app/current,
# allowed_roots /var/www/app/releases) fit the image; only the listeners
# move from 127.0.0.1 to every interface so that other containers reach
# them. Add `-config /etc/fpmux/fpmux.yaml` (mounted) for pool sizes and
# php.ini settings.
CMD ["serve", "-listen", "0.0.0.0:9700", "-metrics", "0.0.0.0:9701"]
