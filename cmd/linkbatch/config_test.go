package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseRunFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // substring; "" for success
		check   func(*testing.T, *config)
	}{
		{name: "dry run needs no credentials", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run"}},
		{name: "simulate needs no credentials", args: []string{"--in", "a.csv", "--out", "r.csv", "--simulate"}},
		{name: "missing in", args: []string{"--out", "r.csv", "--dry-run"}, wantErr: "--in is required"},
		{name: "missing out", args: []string{"--in", "a.csv", "--dry-run"}, wantErr: "--out is required"},
		{name: "same file", args: []string{"--in", "a.csv", "--out", "a.csv", "--dry-run"}, wantErr: "same file"},
		{name: "no tenant", args: []string{"--in", "a.csv", "--out", "r.csv"}, wantErr: "AUTH0_DOMAIN"},
		{name: "no credentials", args: []string{"--in", "a.csv", "--out", "r.csv"}, env: map[string]string{envDomain: "x.auth0.com"}, wantErr: "no credentials"},
		{name: "both kinds of credentials", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envToken: "t", envClientID: "c", envClientSecret: "s"}, wantErr: "not both"},
		{name: "client id without secret", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envClientID: "c"}, wantErr: "needs both"},
		{name: "short token", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envToken: "T"}, wantErr: "at least 16 required"},
		{name: "short token flag", args: []string{"--in", "a.csv", "--out", "r.csv", "--token", "0123456789abcde"},
			env: map[string]string{envDomain: "x.auth0.com"}, wantErr: "at least 16 required"},
		{name: "short client secret", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envClientID: "c", envClientSecret: "secret"}, wantErr: "at least 16 required"},
		{name: "token from env", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envToken: "tok-0123456789abcdef"},
			check: func(t *testing.T, c *config) {
				if c.Token != "tok-0123456789abcdef" || c.Domain != "x.auth0.com" || len(c.secretFlags) != 0 {
					t.Errorf("token %q domain %q secretFlags %v", c.Token, c.Domain, c.secretFlags)
				}
			}},
		{name: "flag wins over env and is flagged as exposed", args: []string{"--in", "a.csv", "--out", "r.csv", "--token", "flagtok-0123456789abcdef"},
			env: map[string]string{envDomain: "x.auth0.com", envToken: "envtok-0123456789abcdef"},
			check: func(t *testing.T, c *config) {
				if c.Token != "flagtok-0123456789abcdef" || len(c.secretFlags) != 1 || c.secretFlags[0] != "token" {
					t.Errorf("token %q secretFlags %v", c.Token, c.secretFlags)
				}
			}},
		{name: "durations are durations", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--timeout", "1500ms", "--grace", "2s"},
			check: func(t *testing.T, c *config) {
				if c.Batch.Timeout.Milliseconds() != 1500 || c.Batch.Grace.Seconds() != 2 {
					t.Errorf("timeout %s grace %s", c.Batch.Timeout, c.Batch.Grace)
				}
			}},
		{name: "bad workers", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--workers", "0"}, wantErr: "workers"},
		{name: "bad log format", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--log-format", "xml"}, wantErr: "log-format"},
		{name: "bad log level", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--log-level", "loud"}, wantErr: "log-level"},
		{name: "retry-failed needs resume", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--retry-failed"}, wantErr: "goes with --resume"},
		{name: "resume needs a file", args: []string{"--in", "a.csv", "--out", "-", "--dry-run", "--resume"}, wantErr: "--resume needs"},
		{name: "unknown flag", args: []string{"--in", "a.csv", "--frobnicate"}, wantErr: "flag provided but not defined: --frobnicate"},
		{name: "bad value names the flag with two dashes", args: []string{"--in", "a.csv", "--workers", "x"}, wantErr: `invalid value "x" for flag --workers`},
		{name: "token from AUTH0_API_TOKEN", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envAPIToken: "apitok-0123456789abcdef"},
			check: func(t *testing.T, c *config) {
				if c.Token != "apitok-0123456789abcdef" {
					t.Errorf("token %q, want the one of %s", c.Token, envAPIToken)
				}
			}},
		{name: "AUTH0_TOKEN wins over AUTH0_API_TOKEN", args: []string{"--in", "a.csv", "--out", "r.csv"},
			env: map[string]string{envDomain: "x.auth0.com", envToken: "tok-0123456789abcdef", envAPIToken: "apitok-0123456789abcdef"},
			check: func(t *testing.T, c *config) {
				if c.Token != "tok-0123456789abcdef" {
					t.Errorf("token %q, want the one of %s", c.Token, envToken)
				}
			}},
		{name: "delimiter and columns", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--delimiter", "tab", "--columns", "primary=Main,secondary=Other", "--report", "r.html", "--report-show-emails"},
			check: func(t *testing.T, c *config) {
				if c.Format.Delimiter != '\t' || c.Format.Columns["primary_user_id"] != "Main" || c.Format.Columns["secondary_user_id"] != "Other" || !c.ReportShowEmails {
					t.Errorf("format %+v, show emails %v", c.Format, c.ReportShowEmails)
				}
				want := []string{"--in=a.csv", "--out=r.csv", "--dry-run", "--delimiter=tab", "--columns=primary=Main,secondary=Other", "--report=r.html", "--report-show-emails"}
				if !sameSet(c.Flags, want) {
					t.Errorf("flags %q, want %q", c.Flags, want)
				}
			}},
		{name: "flags for the report leave secrets out", args: []string{"--in", "a.csv", "--out", "r.csv", "--client-id", "cid", "--client-secret", "sec-0123456789abcdef-sec"},
			env: map[string]string{envDomain: "x.auth0.com"},
			check: func(t *testing.T, c *config) {
				if strings.Contains(strings.Join(c.Flags, " "), "sec-0123") || !slices.Contains(c.Flags, "--client-id=cid") {
					t.Errorf("flags %q", c.Flags)
				}
			}},
		{name: "bad delimiter", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--delimiter", "x"}, wantErr: "--delimiter"},
		{name: "bad columns", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "--columns", "email=E"}, wantErr: "not a column"},
		{name: "stray argument", args: []string{"--in", "a.csv", "--out", "r.csv", "--dry-run", "extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseRunFlags(tt.args, env(tt.env), io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("error %v is not a usage error", err)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestUnknownFlagIsShort: an unknown flag prints one short error and one
// line pointing to --help, not the help itself.
func TestUnknownFlagIsShort(t *testing.T) {
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"run", "--frobnicate"}, nil, io.Discard, &stderr, env(nil), nil)
	code := exitCode(err, &stderr)
	want := "linkbatch: flag provided but not defined: --frobnicate\nRun 'linkbatch run --help' for usage.\n"
	if code != exitUsage || stderr.String() != want {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d and:\n%s", code, stderr.String(), exitUsage, want)
	}
}

// TestRunHelpListsColumns: run --help lists the input's columns.
func TestRunHelpListsColumns(t *testing.T) {
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"run", "--help"}, nil, io.Discard, &stderr, env(nil), nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v", err)
	}
	for _, want := range []string{"Input columns", "primary_user_id ", "secondary_user_id ", "secondary_provider ", "connection_id ", "link_with ", "--delimiter", "--columns", "--report-show-emails"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestHint(t *testing.T) {
	scope := &linker.APIError{Status: 403, Message: "Insufficient scope; expected: update:users, update:current_user_identities."}
	expired := &linker.APIError{Status: 401, Message: "Invalid token."}
	tests := []struct {
		name string
		give error
		want string // substring; "" for no hint
	}{
		{"missing scope", fmt.Errorf("%w: %w", batch.ErrCredentials, scope), "update:users scope"},
		{"bad token", fmt.Errorf("%w: %w", batch.ErrCredentials, expired), "AUTH0_TOKEN"},
		{"interrupted", fmt.Errorf("%w: 3 rows have no result yet", batch.ErrInterrupted), "--resume"},
		{"other", errors.New("disk full"), ""},
	}
	for _, tt := range tests {
		got := hint(tt.give)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: hint = %q, want one containing %q", tt.name, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"version"}, nil, &stdout, io.Discard, env(nil), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "linkbatch ") || !strings.Contains(stdout.String(), "go1.") {
		t.Errorf("version = %q", stdout.String())
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		give error
		want int
	}{
		{"ok", nil, exitOK},
		{"help", flag.ErrHelp, exitOK},
		{"problems", errProblems, exitProblems},
		{"usage", usagef("bad"), exitUsage},
		{"aborted", errors.New("boom"), exitAborted},
	}
	for _, tt := range tests {
		if got := exitCode(tt.give, io.Discard); got != tt.want {
			t.Errorf("%s: exitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestInputOpenerReadsOneVersion: every read of the input returns the bytes
// the file held when it was opened, even after it is replaced or grows.
func TestInputOpenerReadsOneVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.csv")
	first := "primary_user_id,secondary_user_id\nauth0|a,github|a\n"
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	open, cleanup, err := inputOpener(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	read := func() string {
		t.Helper()
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(); got != first {
		t.Fatalf("first read = %q", got)
	}
	// Replaced by rename, as a producer drops a new input.
	next := filepath.Join(filepath.Dir(path), "next.csv")
	if err := os.WriteFile(next, []byte("primary_user_id,secondary_user_id\nauth0|b,github|b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != first {
		t.Errorf("after the file was replaced, a read returned %q", got)
	}

	// Standard input is spooled once.
	open, cleanup2, err := inputOpener("-", strings.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup2()
	if got := read(); got != first {
		t.Errorf("stdin read = %q", got)
	}
}

// TestRollbackSharesRunFlags: 'linkbatch rollback' takes the flags it
// shares with 'linkbatch run' as run takes them: the AUTH0_API_TOKEN
// fallback, -P, the human log format, secrets flagged and left out of the
// recorded flags; its help lists them as run's does.
func TestRollbackSharesRunFlags(t *testing.T) {
	dir := t.TempDir()
	results, backup := filepath.Join(dir, "results.csv"), filepath.Join(dir, "backup.ndjson")
	for _, p := range []string{results, backup} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{"--results", results, "--backup", backup, "--out", filepath.Join(dir, "rollback.csv")}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*testing.T, *config)
	}{
		{name: "token from AUTH0_API_TOKEN", env: map[string]string{envDomain: "x.auth0.com", envAPIToken: "apitok-0123456789abcdef"},
			check: func(t *testing.T, c *config) {
				if c.Token != "apitok-0123456789abcdef" {
					t.Errorf("token %q, want the one of %s", c.Token, envAPIToken)
				}
			}},
		{name: "progress, human log", args: []string{"--dry-run", "-P", "--log-format", "human"},
			check: func(t *testing.T, c *config) {
				if !c.Progress || c.LogFormat != "human" {
					t.Errorf("progress %v, log format %q", c.Progress, c.LogFormat)
				}
			}},
		{name: "log format left to the terminal", args: []string{"--dry-run"},
			check: func(t *testing.T, c *config) {
				if c.LogFormat != "" {
					t.Errorf("log format %q, want it unset (human on a terminal, json otherwise)", c.LogFormat)
				}
			}},
		{name: "secret flag flagged, not recorded", args: []string{"--client-id", "cid", "--client-secret", "sec-0123456789abcdef-sec"},
			env: map[string]string{envDomain: "x.auth0.com"},
			check: func(t *testing.T, c *config) {
				if !slices.Equal(c.secretFlags, []string{"client-secret"}) || strings.Contains(strings.Join(c.Flags, " "), "sec-0123") || !slices.Contains(c.Flags, "--client-id=cid") {
					t.Errorf("secret flags %q, flags %q", c.secretFlags, c.Flags)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := parseRollbackFlags(append(slices.Clone(files), tt.args...), env(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, rc.config)
		})
	}
	var stderr bytes.Buffer
	if _, err := parseRollbackFlags([]string{"--help"}, env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("rollback --help = %v", err)
	}
	for _, want := range []string{"-P, --progress", "human", "--token", "--lines", "Exit codes: 0 all rows rolled back"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("rollback help lacks %q", want)
		}
	}
}

// TestHelpSpellsFlagsWithTwoDashes: every command's help lists its flags
// with two dashes, one line each (-P, the short form of --progress, aside).
func TestHelpSpellsFlagsWithTwoDashes(t *testing.T) {
	oneDash := regexp.MustCompile(`(?m)^\s+-[A-Za-z]`)
	tests := []struct {
		cmd  string
		flag string // a flag the help must list
	}{
		{"run", "--dry-run"},
		{"plan", "--from-export file"},
		{"rollback", "--backup file"},
		{"enqueue", "--to string"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(t.Context(), []string{tt.cmd, "--help"}, nil, io.Discard, &stderr, env(nil), nil)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("%s --help = %v", tt.cmd, err)
			}
			help := strings.ReplaceAll(stderr.String(), "  -P, --progress", "  --progress")
			if m := oneDash.FindString(help); m != "" {
				t.Errorf("%s --help spells a flag with one dash (%q):\n%s", tt.cmd, strings.TrimSpace(m), help)
			}
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(tt.flag) + ` +\S`).MatchString(help) {
				t.Errorf("%s --help has no line for %s:\n%s", tt.cmd, tt.flag, help)
			}
		})
	}
}
