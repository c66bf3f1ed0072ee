// Command fpmux makes PHP deploys atomic: it takes php-fpm's place behind
// nginx or Apache, runs one php-fpm master per release, and switches new
// requests to a new release at once while old ones finish where they began.
//
//	fpmux serve [-config FILE] [flags]   run the daemon
//	fpmux deploy|activate|rollback|retire|status   talk to a running daemon
//	fpmux check [-config FILE]           test a config, like php-fpm -t
//	fpmux version                        fpmux, Go and php-fpm versions
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fpmux/fpmux/pool"
)

const usage = `usage: fpmux <command> [flags]

commands:
  serve      run the daemon in the foreground
  deploy     register a release and wait until it is healthy and active
  activate   switch traffic to a ready release
  rollback   activate the previous release
  retire     drain and stop a release that is not active
  status     list releases, states, in-flight counts, pool figures
  upgrade    replace the running fpmux by this binary, keeping its pools and connections
  reload-pools  reread the config and give the active release a fresh pool under it, switched to like a deploy
  fleet      deploy, status, rollback of a fleet of hosts through etcd
  check      test a config file and what it names, like php-fpm -t (exit 0 or 1)
  version    print fpmux's version and commit, Go's, and the php-fpm it would run

Run 'fpmux <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	pool.LifelineMain() // this binary, run again as a pool lifeline: see serve
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch name := args[0]; name {
	case "serve":
		return runServe(args[1:], stderr)
	case "deploy", "activate", "rollback", "retire", "status", "upgrade", "reload-pools":
		return runClient(name, args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "fleet":
		return runFleet(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fpmux: unknown command %q\n%s", name, usage)
		return 2
	}
}
