// Command fpmux runs PHP releases behind one FastCGI address.
//
// This is a placeholder main that only dispatches the client subcommands;
// the serve side replaces it.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fpmux serve|deploy|activate|rollback|retire|status [flags]")
		os.Exit(2)
	}
	switch name := os.Args[1]; name {
	case "deploy", "activate", "rollback", "retire", "status":
		os.Exit(runClient(name, os.Args[2:], os.Stdout, os.Stderr))
	case "serve":
		fmt.Fprintln(os.Stderr, "fpmux serve: not built yet")
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "fpmux: unknown command %q\n", name)
		os.Exit(2)
	}
}
