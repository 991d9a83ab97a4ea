// Command linkbatch links duplicate Auth0 users in bulk. See README.md.
//
// The command owns what the process gives it: flags and environment parsed
// into one config, the signals, the log's format, the progress display, the
// metrics endpoint, and the mapping of errors to exit codes (main alone
// exits). It wires the packages together and decides nothing they own: rows,
// results and resume are batch's, answers are linker's, pacing is
// ratelimit's.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// main alone touches the process: its arguments, environment, signals and
// exit code.
func main() {
	// The first SIGINT/SIGTERM stops new rows and lets rows in flight
	// finish within --grace; a second one cancels them at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv, sigs)
	signal.Stop(sigs)
	os.Exit(exitCode(err, os.Stderr))
}
