package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker"
)

// Exit codes, documented in README.md.
const (
	exitOK       = 0 // every row linked, already linked, planned or skipped
	exitProblems = 1 // the run finished, but some rows are invalid or failed
	exitUsage    = 2 // bad flags or configuration; nothing was sent
	exitAborted  = 3 // the run stopped early: credentials refused, every row failing alike, input unreadable or changed, interrupted
)

// usageError is a problem with the command line or the configuration.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// commandError is an error of the command cmd, whose help a usage error
// points to ('run' when the error does not say).
type commandError struct {
	cmd string
	err error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// errProblems is returned when the run finished with invalid or failed rows;
// the rows themselves are in the results file.
var errProblems = errors.New("some rows are invalid or failed; see the results file")

// exitCode maps the error run returned to the process exit code, printing
// it to stderr; it is the only place that decides the exit code.
func exitCode(err error, stderr io.Writer) int {
	var (
		ue  *usageError
		rue *batch.UsageError // the results file refused as asked
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errProblems):
		fmt.Fprintf(stderr, "linkbatch: %v\n", err)
		return exitProblems
	case errors.As(err, &ue), errors.As(err, &rue):
		cmd := "run"
		if ce, ok := errors.AsType[*commandError](err); ok {
			cmd = ce.cmd
		}
		fmt.Fprintf(stderr, "linkbatch: %v\nRun 'linkbatch %s --help' for usage.\n", err, cmd)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "linkbatch: aborted: %v\n", err)
		if h := hint(err); h != "" {
			fmt.Fprintf(stderr, "linkbatch: %s\n", h)
		}
		return exitAborted
	}
}

// hint says what to do next about an error that aborted a run.
func hint(err error) string {
	const resume = "; then run the same command with --resume"
	var alike *batch.FailingAlikeError
	if errors.As(err, &alike) {
		switch alike.Kind {
		case linker.FatalDNS:
			return "check " + envDomain + " (--domain): its host name does not resolve (a typo? a tenant's domain looks like acme.eu.auth0.com)" + resume
		case linker.FatalRefused:
			return "check " + envDomain + " (--domain): nothing accepts connections at its address and port (a wrong port, or a proxy that is down)" + resume
		case linker.FatalTLS:
			return "check " + envDomain + " (--domain): its TLS certificate is not trusted or not for that name (a wrong host, or a proxy that intercepts TLS: " +
				"add its CA to the system's trust store)" + resume
		case linker.FatalTokenFormat:
			return "check " + envToken + " (--token): it is not a JWT (three base64url parts separated by dots); copy the whole Management API token, " +
				"without quotes or a \"Bearer \" prefix" + resume
		}
	}
	switch {
	case errors.Is(err, batch.ErrCredentials) && linker.IsForbidden(err):
		return "grant the application the update:users scope (and read:users, used to check ambiguous answers and by --verify): " +
			"Auth0 dashboard > Applications > APIs > Auth0 Management API > Machine to Machine Applications; then run the same command with --resume"
	case errors.Is(err, batch.ErrCredentials):
		return "check " + envToken + " (it may have expired or been revoked) or " + envClientID + "/" + envClientSecret +
			"; then run the same command with --resume"
	case errors.Is(err, errInputChanged):
		return "the input must stay as it was until the run ends; restore it (the results file's .run.json sidecar holds its SHA-256) " +
			"and run the same command with --resume, or put a changed input in a new file with a new --out"
	case errors.Is(err, batch.ErrInterrupted), errors.Is(err, batch.ErrIncomplete):
		return "run the same command with --resume to process the remaining rows"
	}
	return ""
}
