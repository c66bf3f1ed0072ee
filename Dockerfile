# fpmux with php-fpm 8.2 on Debian bookworm.
#
#   docker build -t fpmux .
#   docker run -d --name fpmux -p 9700:9700 -v /srv/app/releases:/var/www/app/releases fpmux
#   docker exec fpmux fpmux deploy -id r1 -root /var/www/app/releases/r1
#
# The web server points fastcgi_pass at port 9700 with its root set to
# /var/www/app/current (fpmux's docroot); the admin socket stays inside the
# container at /run/fpmux/admin.sock.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fpmux ./cmd/fpmux

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        php8.2-fpm php8.2-opcache php8.2-apcu \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/fpmux /var/lib/fpmux /var/www/app/releases
COPY --from=build /out/fpmux /usr/local/bin/fpmux
VOLUME /var/www/app/releases
EXPOSE 9700
# fpmux stays root to start one php-fpm master per release; PHP workers run
# as www-data. SIGTERM drains and stops every php-fpm master.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fpmux"]
CMD ["serve", "-listen", "0.0.0.0:9700"]
