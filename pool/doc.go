// Package pool owns one release's php-fpm: it writes the master's config,
// runs the master in its own process group, probes it over FastCGI
// (ping and status), restarts it when it dies unexpectedly, counts the
// requests routed to it so that a drain knows when it is idle, and stops it.
//
// A Pool is created by Start, which returns only once php-fpm answers its
// ping; it ends with Stop, after which no process of the pool is left and
// its directory is gone. Pool imports no other fpmux package.
//
// The package is Linux-only in practice: it relies on process groups,
// pidfds and /proc. A lifeline process (lifeline.go) stops the masters
// when every fpmux is gone.
package pool
