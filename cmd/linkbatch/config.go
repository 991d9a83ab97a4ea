package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// config is every setting of one 'linkbatch run', parsed once from flags
// with the environment as a fallback, and checked by Validate.
type config struct {
	In, Out     string
	Backup      string // --backup: the NDJSON file both users of each row are backed up to
	Simulate    bool
	Report      string
	Resume      bool
	RetryFailed bool
	LogLevel    string
	// ProgressEvery is the interval of progress log lines when stderr is
	// not a terminal; NoProgress turns progress off.
	ProgressEvery time.Duration
	NoProgress    bool
	// Progress (-P, --progress) draws the progress line even when stderr
	// is not a terminal.
	Progress    bool
	MetricsAddr string
	LogFormat   string
	// Format is how the input is read: --delimiter and --columns.
	Format batch.Format
	// ReportShowEmails shows the emails behind email warnings in the
	// report unmasked.
	ReportShowEmails bool
	// Flags are the flags as given, secrets left out, for the report.
	Flags []string

	Batch batch.Config
	Pace  ratelimit.Config

	// Connection to the tenant.
	Domain       string
	Token        string
	ClientID     string
	ClientSecret string
	Audience     string

	// secretFlags names the secrets given as flags, to warn about.
	secretFlags []string
	// outStream is set by Validate when Out is a stream, not a results
	// file (see batch.IsStreamOut).
	outStream bool

	// Drain, with a queue --in, ends the run once the queue is empty
	// instead of waiting for requests until a signal.
	Drain bool
	// queue is the queue --in names, parsed by Validate; nil for a file.
	queue *queueSettings
	// getenv is the environment, for the queue's password.
	getenv func(string) string
}

// Environment variables read as fallbacks, named as Auth0's own tools name them.
const (
	envDomain       = "AUTH0_DOMAIN"
	envToken        = "AUTH0_TOKEN"
	envAPIToken     = "AUTH0_API_TOKEN" // the Terraform provider's name, read when AUTH0_TOKEN is unset
	envClientID     = "AUTH0_CLIENT_ID"
	envClientSecret = "AUTH0_CLIENT_SECRET"
	envAudience     = "AUTH0_AUDIENCE"
)

const runUsage = `Usage: linkbatch run --in FILE --out FILE [flags]

Links the secondary account of each input row into its primary account
(POST /api/v2/users/{id}/identities) and writes one result row per input row.

Examples:
  linkbatch run --simulate --in samples/pairs.csv --out results.csv     # no tenant needed
  linkbatch run --dry-run --verify --in pairs.csv --out audit.csv --report audit.html
  AUTH0_DOMAIN=acme.eu.auth0.com AUTH0_CLIENT_ID=... AUTH0_CLIENT_SECRET=... \
    linkbatch run --in pairs.csv --out results.csv
  linkbatch run --in pairs.csv --out results.csv --resume               # after an interruption
  linkbatch run --drain --in 'redis://127.0.0.1:6379/0?stream=links' --out results.csv   # a queue
  linkbatch run --dry-run --in export.csv --out plan.csv --delimiter ';' \
    --columns 'primary=Primary User ID,secondary=Secondary User ID'

Input columns (the header names them, in any order; other columns are ignored):
`

// flagGroup is a titled group of flags in a command's help.
type flagGroup struct {
	title string
	names []string
}

// flagGroups orders the flags of 'linkbatch run' in its help.
var flagGroups = []flagGroup{
	{"Input and results", []string{"in", "out", "drain", "delimiter", "columns", "resume", "retry-failed", "report", "report-show-emails"}},
	{"Safety", []string{"dry-run", "verify", "require-verified-email", "backup", "merge-metadata", "simulate"}},
	{"Tenant and credentials (flags override the AUTH0_* environment)", []string{"domain", "token", "client-id", "client-secret", "audience"}},
	{"Pacing and retries", []string{"rate", "burst", "share", "workers", "max-retries", "timeout", "grace"}},
	{"Logs, progress and metrics", []string{"log-level", "log-format", "progress", "progress-every", "no-progress", "metrics-addr"}},
}

// runExitCodes ends the help of 'linkbatch run'.
const runExitCodes = "Exit codes: 0 all rows done; 1 some rows invalid or failed; 2 usage or configuration error; 3 aborted."

// printFlagGroups prints the flags of fs in groups, those in none under
// "Other", then the exit codes.
func printFlagGroups(w io.Writer, fs *flag.FlagSet, groups []flagGroup, exitCodes string) {
	seen := map[string]bool{"P": true} // shown with --progress
	print := func(f *flag.Flag) {
		seen[f.Name] = true
		printFlag(w, f)
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, n := range g.names {
			if f := fs.Lookup(n); f != nil {
				print(f)
			}
		}
	}
	var rest []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			rest = append(rest, f)
		}
	})
	if len(rest) > 0 {
		fmt.Fprintf(w, "\nOther:\n")
		for _, f := range rest {
			print(f)
		}
	}
	fmt.Fprintf(w, "\n%s\n", exitCodes)
}

// printFlag prints the help line of the flag f, spelled with two dashes:
// "  --name value   usage (default D)"; --progress with its alias -P.
func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	line := "  --" + f.Name
	if f.Name == "progress" { // -P is its alias
		line = "  -P, --progress"
		usage = strings.TrimSuffix(usage, " (-P)")
	}
	if name != "" {
		line += " " + name
	}
	fmt.Fprintf(w, "%-28s %s", line, usage)
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
		fmt.Fprintf(w, " (default %s)", f.DefValue)
	}
	fmt.Fprintln(w)
}

// printFlags prints the help lines of every flag of fs, in the order of
// their names (printFlag).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
}

// parseRunFlags parses the arguments of 'linkbatch run'. getenv supplies the
// fallback environment.
func parseRunFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	cfg := &config{
		LogLevel: "info",
		Batch:    batch.DefaultConfig(),
		Pace:     ratelimit.DefaultConfig(),
	}
	fs := flag.NewFlagSet("linkbatch run", flag.ContinueOnError)
	fs.StringVar(&cfg.In, "in", "", "input CSV `file` of pairs; - reads standard input; redis://... or nats://... reads a queue (see README)")
	fs.BoolVar(&cfg.Drain, "drain", false, "with a queue --in: exit once nothing is left to read, claim or finish, instead of running until SIGINT/SIGTERM")
	fs.StringVar(&cfg.Out, "out", "", "results CSV `file` to write, locked for the run; - or /dev/stdout writes standard output (a stream: no resume)")
	fs.BoolVar(&cfg.Batch.DryRun, "dry-run", false, "validate and plan only; send no write to the tenant (needs no credentials)")
	flagValues := map[string]string{} // of the flags whose Value does not print them
	fs.Func("delimiter", "column `delimiter` of the input: , ; tab or |; by default , unless only ; or only a tab splits the header into the needed columns", func(v string) error {
		flagValues["delimiter"] = v
		d, err := batch.ParseDelimiter(v)
		cfg.Format.Delimiter = d
		return err
	})
	fs.Func("columns", "map the input's header names to the columns, `column=NAME,...`: e.g. 'primary=Primary User ID,secondary=Secondary User ID'", func(v string) error {
		flagValues["columns"] = v
		cols, err := batch.ParseColumns(v)
		cfg.Format.Columns = cols
		return err
	})
	fs.BoolVar(&cfg.ReportShowEmails, "report-show-emails", false, "show the emails behind email warnings in the --report unmasked (they are personal data; masked j***@example.com by default)")
	fs.StringVar(&cfg.Report, "report", "", "at the end, write an HTML report of the run (totals, statuses, warnings, the first rows of each problem) to `file`")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue the run that wrote --out: keep its final rows, process the rest")
	fs.BoolVar(&cfg.RetryFailed, "retry-failed", false, "with --resume, also retry rows that failed for a permanent reason")
	fs.BoolVar(&cfg.Batch.Verify, "verify", false, "read both users of each row first (GETs, needs read:users): report missing users, pairs already linked, and email warnings")
	fs.BoolVar(&cfg.Batch.RequireVerifiedEmail, "require-verified-email", false, "read both users first and refuse (invalid, nothing sent) a pair whose emails differ or are not both verified")
	addBackupFlags(fs, cfg)
	fs.BoolVar(&cfg.Simulate, "simulate", false, "run against a built-in simulated tenant instead of AUTH0_DOMAIN")
	addSharedFlags(fs, cfg)
	if err := parseFlags(fs, args, func() {
		fmt.Fprint(stderr, runUsage)
		printColumns(stderr)
		printFlagGroups(stderr, fs, flagGroups, runExitCodes)
	}); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg.applyFlags(fs, getenv, flagValues)
	return cfg, cfg.Validate()
}

// addSharedFlags registers the flags 'linkbatch run' and 'linkbatch
// rollback' share: tenant and credentials, pacing and retries, logs,
// progress and metrics.
func addSharedFlags(fs *flag.FlagSet, cfg *config) {
	fs.IntVar(&cfg.Batch.Workers, "workers", cfg.Batch.Workers, "most requests in flight at once; within it, as many as the pace times the latency needs")
	fs.Var((*rateFlag)(&cfg.Pace.Rate), "rate", "requests per second for all workers together, `auto|N`: auto learns the tenant's limit from its rate-limit headers; N caps it")
	fs.IntVar(&cfg.Pace.Burst, "burst", cfg.Pace.Burst, "requests that may be sent at once; 0 uses the tenant's bucket size")
	fs.Float64Var(&cfg.Pace.Share, "share", 1, "use at most this fraction (0 < F <= 1) of the tenant's limit, leaving the rest to other clients")
	fs.IntVar(&cfg.Pace.MaxRetries, "max-retries", cfg.Pace.MaxRetries, "retries of a request after 5xx answers or network errors")
	fs.DurationVar(&cfg.Batch.Timeout, "timeout", cfg.Batch.Timeout, "limit on one HTTP request")
	fs.DurationVar(&cfg.Batch.Grace, "grace", cfg.Batch.Grace, "after SIGINT/SIGTERM, how long rows in flight may finish")
	fs.DurationVar(&cfg.ProgressEvery, "progress-every", 30*time.Second, "when stderr is not a terminal, log a progress line this often")
	fs.BoolVar(&cfg.NoProgress, "no-progress", false, "show no progress bar and log no progress lines")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on this `address` (e.g. :9090); off when empty")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "", "log format: human (the default on a terminal: a line for each problem, rows that went well at debug level), json (the default otherwise) or console")
	fs.BoolVar(&cfg.Progress, "progress", false, "draw the progress line even when stderr is not a terminal (-P)")
	fs.BoolVar(&cfg.Progress, "P", false, "same as --progress")
	fs.StringVar(&cfg.Domain, "domain", "", "tenant domain or URL (env "+envDomain+")")
	fs.StringVar(&cfg.Token, "token", "", "Management API token; prefer env "+envToken+" (a flag shows in ps and shell history)")
	fs.StringVar(&cfg.ClientID, "client-id", "", "client id for the client-credentials grant (env "+envClientID+")")
	fs.StringVar(&cfg.ClientSecret, "client-secret", "", "client secret; prefer env "+envClientSecret+" (a flag shows in ps and shell history)")
	fs.StringVar(&cfg.Audience, "audience", "", "token audience (env "+envAudience+"; default https://DOMAIN/api/v2/)")
}

// applyFlags takes from the parsed fs what its values alone do not say:
// the secrets given as flags (to warn about), the flags as given, secrets
// left out, for the report (values holds those whose flag.Value does not
// print them), and, for settings no flag gave, the environment's
// fallbacks.
func (c *config) applyFlags(fs *flag.FlagSet, getenv func(string) string, values map[string]string) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "token" || f.Name == "client-secret" {
			c.secretFlags = append(c.secretFlags, f.Name)
			return // never recorded
		}
		v := f.Value.String()
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() && v == "true" {
			c.Flags = append(c.Flags, "--"+f.Name)
			return
		}
		if given, ok := values[f.Name]; ok {
			v = given
		}
		c.Flags = append(c.Flags, "--"+f.Name+"="+v)
	})
	fallback := func(v *string, env string) {
		if *v == "" {
			*v = strings.TrimSpace(getenv(env))
		}
	}
	fallback(&c.Domain, envDomain)
	fallback(&c.Token, envToken)
	fallback(&c.Token, envAPIToken)
	fallback(&c.ClientID, envClientID)
	fallback(&c.ClientSecret, envClientSecret)
	fallback(&c.Audience, envAudience)
	c.getenv = getenv
}

// Validate checks the whole configuration and returns a *usageError naming
// the first problem: of the files, then of the settings, then of the
// credentials.
func (c *config) Validate() error {
	if err := c.validateFiles(); err != nil {
		return err
	}
	if err := c.validateSettings(); err != nil {
		return err
	}
	return c.validateCredentials()
}

// validateFiles checks --in, --out, --report and --resume together, and
// sets c.outStream.
func (c *config) validateFiles() error {
	if c.In == "" {
		return usagef("--in is required (a CSV file, or - for standard input)")
	}
	if isQueue(c.In) {
		return c.validateQueue()
	}
	if c.Drain {
		return usagef("--drain goes with a queue --in (redis://... or nats://...)")
	}
	if c.Out == "" {
		return usagef("--out is required (the results CSV file)")
	}
	if c.RetryFailed && !c.Resume {
		return usagef("--retry-failed goes with --resume")
	}
	stream, err := batch.IsStreamOut(c.Out)
	if err != nil {
		return usagef("--out: %v", err)
	}
	c.outStream = stream
	if c.Report != "" && stream {
		return usagef("--report needs --out to name a regular file, which it reads back")
	}
	if c.Resume && stream {
		return usagef("--resume needs --out to name a regular file; %s is a stream, which keeps nothing to resume", c.Out)
	}
	if err := c.validateBackup(); err != nil {
		return err
	}
	if err := checkAliases(c); err != nil {
		return err
	}
	return nil
}

// validateSettings checks the batch, pacing, logging and progress settings.
func (c *config) validateSettings() error {
	if err := c.Batch.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := c.Pace.Validate(); err != nil {
		return usagef("%v", err)
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		return usagef("--log-level: %v", err)
	}
	if c.ProgressEvery < 0 {
		return usagef("--progress-every must not be negative, not %s", c.ProgressEvery)
	}
	switch c.LogFormat {
	case "", "json", "console", "human":
	default:
		return usagef("--log-format must be human, json or console, not %q", c.LogFormat)
	}
	if c.Progress && c.NoProgress {
		return usagef("--progress and --no-progress contradict each other")
	}
	if c.Pace.Share <= 0 || c.Pace.Share > 1 {
		return usagef("--share must be more than 0 and at most 1, not %g", c.Pace.Share)
	}
	return nil
}

// validateCredentials checks the tenant and the credentials, when the run
// needs them.
func (c *config) validateCredentials() error {
	if c.Simulate || (c.Batch.DryRun && !c.Batch.ReadsUsers()) {
		return nil // no credentials needed
	}
	if c.Domain == "" {
		return usagef("no tenant: set %s (or --domain), or use --simulate or --dry-run", envDomain)
	}
	hasCC := c.ClientID != "" || c.ClientSecret != ""
	switch {
	case c.Token != "" && hasCC:
		return usagef("give either %s or %s and %s, not both", envToken, envClientID, envClientSecret)
	case c.Token == "" && !hasCC:
		return usagef("no credentials: set %s, or %s and %s", envToken, envClientID, envClientSecret)
	case hasCC && (c.ClientID == "" || c.ClientSecret == ""):
		return usagef("the client-credentials grant needs both %s and %s", envClientID, envClientSecret)
	case c.Token != "" && len(c.Token) < linker.MinSecretLen:
		return usagef("%s (or --token) is %d characters long, shorter than any Management API token (they are JWTs of hundreds of characters; at least %d required)", envToken, len(c.Token), linker.MinSecretLen)
	case hasCC && len(c.ClientSecret) < linker.MinSecretLen:
		return usagef("%s (or --client-secret) is %d characters long, shorter than any Auth0 client secret (they have 64; at least %d required)", envClientSecret, len(c.ClientSecret), linker.MinSecretLen)
	}
	return nil
}

// parseFlags parses args with fs and calls help for -h or --help. A parse
// error is returned, not printed with the whole help: main prints it once,
// with a pointer to --help, and with its flags spelled with two dashes as
// the help spells them.
func parseFlags(fs *flag.FlagSet, args []string, help func()) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		help()
		return err
	}
	return errors.New(twoDashes(err.Error()))
}

// printColumns lists the input's columns, for the help.
func printColumns(w io.Writer) {
	for _, c := range batch.Columns {
		fmt.Fprintf(w, "  %-28s %s\n", c.Name, c.Help)
	}
}

// flagRE finds a flag named with one dash in the flag package's errors.
var flagRE = regexp.MustCompile(`(^|[\s:])-([A-Za-z][\w-]*)`)

// twoDashes spells the flags in an error of the flag package with two
// dashes, as the help does.
func twoDashes(msg string) string { return flagRE.ReplaceAllString(msg, "$1--$2") }

// rateFlag is the --rate flag: "auto" (stored as 0: learn the tenant's
// limit) or a positive number of requests per second.
type rateFlag float64

var _ flag.Value = (*rateFlag)(nil)

func (r *rateFlag) String() string {
	if r == nil || *r == 0 {
		return "auto"
	}
	return strconv.FormatFloat(float64(*r), 'g', -1, 64)
}

func (r *rateFlag) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "auto") {
		*r = 0
		return nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("want auto or a positive number of requests per second")
	}
	*r = rateFlag(v)
	return nil
}
