module github.com/fpmux/fpmux

go 1.26.8

require (
	github.com/coreos/go-systemd/v22 v22.7.0 // indirect
	github.com/prometheus/client_golang v1.23.2 // indirect
	github.com/yookoala/gofast v0.8.0 // indirect
	golang.org/x/tools v0.0.0-20200908211811-12e1bf57a112 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
