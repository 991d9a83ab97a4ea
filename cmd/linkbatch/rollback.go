package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/ratelimit"
)

const rollbackUsage = `Usage: linkbatch rollback --results FILE --backup FILE --out FILE [flags]

Undoes the links of a run from its backup: for each linked row of --results,
and each already_linked or failed row that --backup holds (only --lines, when
given), it unlinks the secondary from the primary
(DELETE /api/v2/users/{id}/identities/{provider}/{user_id}), then restores
the recreated secondary's metadata and the primary's metadata as --backup
recorded them (PATCH; keys the merge added are removed). One result row per
rolled-back row: unlinked, already_unlinked, invalid or failed.

An unlink brings back neither the secondary's roles and permissions, its
organization memberships, its created_at, nor its login history: see README.

Examples:
  linkbatch rollback --results results.csv --backup backup.ndjson --out rollback.csv --dry-run
  linkbatch rollback --results results.csv --backup backup.ndjson --out rollback.csv --lines 2,7-9
  linkbatch rollback --results results.csv --backup backup.ndjson --out rollback.csv --resume
`

// rollbackFlagGroups orders the flags of 'linkbatch rollback' in its help.
var rollbackFlagGroups = []struct {
	title string
	names []string
}{
	{"Input and results", []string{"results", "backup", "out", "lines", "resume", "retry-failed", "dry-run"}},
	{"Tenant and credentials (flags override the AUTH0_* environment)", []string{"domain", "token", "client-id", "client-secret", "audience"}},
	{"Pacing and retries", []string{"rate", "burst", "share", "workers", "max-retries", "timeout", "grace"}},
	{"Logs, progress and metrics", []string{"log-level", "log-format", "progress-every", "no-progress", "metrics-addr"}},
}

// rollbackConfig is every setting of one 'linkbatch rollback': the run's
// settings (In is the results file to roll back, Backup its backup), and
// the lines to roll back (nil: every linked row).
type rollbackConfig struct {
	*config
	Lines *batch.LineSet
}

func rollbackUsagef(format string, args ...any) error {
	return &usageError{&commandError{cmd: "rollback", err: fmt.Errorf(format, args...)}}
}

// parseRollbackFlags parses the arguments of 'linkbatch rollback'. getenv
// supplies the fallback environment.
func parseRollbackFlags(args []string, getenv func(string) string, stderr io.Writer) (*rollbackConfig, error) {
	cfg := &config{LogLevel: "info", LogFormat: "json", Batch: batch.DefaultConfig(), Pace: ratelimit.DefaultConfig()}
	fs := flag.NewFlagSet("linkbatch rollback", flag.ContinueOnError)
	help := func() {
		fmt.Fprint(stderr, rollbackUsage)
		printFlagGroups(stderr, fs, rollbackFlagGroups)
	}
	var lines string
	fs.StringVar(&cfg.In, "results", "", "results CSV `file` of the run to roll back")
	fs.StringVar(&cfg.Backup, "backup", "", "the NDJSON backup `file` that run wrote (--backup)")
	fs.StringVar(&cfg.Out, "out", "", "rollback results CSV `file` to write, locked for the rollback")
	fs.StringVar(&lines, "lines", "", "roll back only these input `lines`, e.g. 2,7-9")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue the rollback that wrote --out: keep its final rows, process the rest")
	fs.BoolVar(&cfg.RetryFailed, "retry-failed", false, "with --resume, also retry rows that failed for a permanent reason")
	fs.BoolVar(&cfg.Batch.DryRun, "dry-run", false, "list the rows that would be rolled back (planned); send nothing (needs no credentials)")
	fs.IntVar(&cfg.Batch.Workers, "workers", cfg.Batch.Workers, "rows in flight at once")
	fs.Var((*rateFlag)(&cfg.Pace.Rate), "rate", "requests per second for all workers together: `auto` learns the tenant's limit; a number caps it")
	fs.IntVar(&cfg.Pace.Burst, "burst", cfg.Pace.Burst, "requests that may be sent at once; 0 uses the tenant's bucket size")
	fs.Float64Var(&cfg.Pace.Share, "share", 1, "use at most this fraction (0 < F <= 1) of the tenant's limit")
	fs.IntVar(&cfg.Pace.MaxRetries, "max-retries", cfg.Pace.MaxRetries, "retries of a request after 5xx answers or network errors")
	fs.DurationVar(&cfg.Batch.Timeout, "timeout", cfg.Batch.Timeout, "limit on one HTTP request")
	fs.DurationVar(&cfg.Batch.Grace, "grace", cfg.Batch.Grace, "after SIGINT/SIGTERM, how long rows in flight may finish")
	fs.DurationVar(&cfg.ProgressEvery, "progress-every", 30*time.Second, "when stderr is not a terminal, log a progress line this often")
	fs.BoolVar(&cfg.NoProgress, "no-progress", false, "show no progress bar and log no progress lines")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on this `address`; off when empty")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: json or console")
	fs.StringVar(&cfg.Domain, "domain", "", "tenant domain or URL (env "+envDomain+")")
	fs.StringVar(&cfg.Token, "token", "", "Management API token; prefer env "+envToken)
	fs.StringVar(&cfg.ClientID, "client-id", "", "client id for the client-credentials grant (env "+envClientID+")")
	fs.StringVar(&cfg.ClientSecret, "client-secret", "", "client secret; prefer env "+envClientSecret)
	fs.StringVar(&cfg.Audience, "audience", "", "token audience (env "+envAudience+")")
	if err := parseFlags(fs, args, help); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{&commandError{cmd: "rollback", err: err}}
	}
	if fs.NArg() > 0 {
		return nil, rollbackUsagef("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "token" || f.Name == "client-secret" {
			cfg.secretFlags = append(cfg.secretFlags, f.Name)
		}
	})
	for v, env := range map[*string]string{&cfg.Domain: envDomain, &cfg.Token: envToken, &cfg.ClientID: envClientID,
		&cfg.ClientSecret: envClientSecret, &cfg.Audience: envAudience} {
		if *v == "" {
			*v = strings.TrimSpace(getenv(env))
		}
	}
	rc := &rollbackConfig{config: cfg}
	if lines != "" {
		set, err := parseLines(lines)
		if err != nil {
			return nil, rollbackUsagef("--lines: %v", err)
		}
		rc.Lines = set
	}
	return rc, rc.Validate()
}

// Validate checks the files, then the settings and the credentials as
// 'linkbatch run' does.
func (c *rollbackConfig) Validate() error {
	switch {
	case c.In == "":
		return rollbackUsagef("--results is required (the results file of the run to roll back)")
	case c.Backup == "":
		return rollbackUsagef("--backup is required (the backup that run wrote)")
	case c.Out == "" || c.Out == "-":
		return rollbackUsagef("--out is required (the rollback's results file)")
	case c.RetryFailed && !c.Resume:
		return rollbackUsagef("--retry-failed goes with --resume")
	}
	if stream, err := batch.IsStreamOut(c.Out); err != nil || stream {
		return rollbackUsagef("--out must name a regular file, which a resume reads back")
	}
	for _, f := range []struct{ flag, path string }{{"--results", c.In}, {"--backup", c.Backup}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return rollbackUsagef("%s: %v", f.flag, err)
		}
		if !st.Mode().IsRegular() {
			return rollbackUsagef("%s: %s is not a regular file", f.flag, f.path)
		}
	}
	files := [][2]string{
		{"--results", c.In}, {"--backup", c.Backup}, {"--out", c.Out},
		{"the run record of --out", batch.SidecarPath(c.Out)}, {"the lock file of --out", batch.LockPath(c.Out)},
	}
	for i, a := range files {
		for _, b := range files[i+1:] {
			if sameFile(a[1], b[1]) {
				return rollbackUsagef("%s (%s) and %s (%s) name the same file", a[0], a[1], b[0], b[1])
			}
		}
	}
	if err := c.validateSettings(); err != nil {
		return err
	}
	return c.validateCredentials()
}

// parseLines parses a list of lines and ranges of lines: "2,7-9".
func parseLines(s string) (*batch.LineSet, error) {
	set := &batch.LineSet{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(strings.TrimSpace(hi))
		}
		switch {
		case err != nil || a < 1:
			return nil, fmt.Errorf("%q is not a line number or a range of them (N or N-M)", part)
		case b < a:
			return nil, fmt.Errorf("%q: the range ends before it starts", part)
		case b-a > 10_000_000:
			return nil, fmt.Errorf("%q: a range of more than 10,000,000 lines", part)
		}
		for n := a; n <= b; n++ {
			set.Add(n)
		}
	}
	return set, nil
}

// printFlagGroups prints the flags of fs in the groups given.
func printFlagGroups(w io.Writer, fs *flag.FlagSet, groups []struct {
	title string
	names []string
}) {
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, n := range g.names {
			if f := fs.Lookup(n); f != nil {
				printFlag(w, f)
			}
		}
	}
	fmt.Fprintf(w, "\nExit codes: 0 all rows rolled back; 1 some rows invalid or failed; 2 usage or configuration error; 3 aborted.\n")
}

// rollbackCommand runs 'linkbatch rollback' through the stages of a run:
// the same logging, signals, lock, client, pacer, metrics, results file and
// summary, over the linked rows of the results file instead of an input.
func rollbackCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, signals <-chan os.Signal) (err error) {
	defer func() {
		// A results file or backup refused as asked points to this
		// command's help.
		if _, refused := errors.AsType[*batch.UsageError](err); refused {
			err = &commandError{cmd: "rollback", err: err}
		}
	}()
	rc, err := parseRollbackFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	c := &command{cfg: rc.config, stdout: stdout, stderr: stderr}
	defer c.close()
	c.startLog()
	ctx = c.watchSignals(ctx, signals)
	if err := c.claimResults(); err != nil {
		return err
	}
	if err := c.resultsOptions().CheckOverwrite(); err != nil {
		return err
	}
	src, rb, err := c.openRollback(rc.Lines)
	if err != nil {
		return err
	}
	if err := c.buildRunner(); err != nil {
		return err
	}
	c.runner.Plan = nil
	c.runner.Action = rb.Act
	if err := c.startMetrics(ctx); err != nil {
		return err
	}
	res, err := c.openResults()
	if err != nil {
		return err
	}
	sum, runErr := c.executeSource(ctx, src, res)
	return c.finish(sum, res.Kept, runErr)
}

// openRollback indexes the backup, fingerprints the results file and the
// backup together (a resumed rollback must read the same two), and opens
// the results file as the rollback's source.
func (c *command) openRollback(lines *batch.LineSet) (*batch.RollbackSource, *batch.Rollback, error) {
	cfg := c.cfg
	bf, err := os.Open(cfg.Backup)
	if err != nil {
		return nil, nil, rollbackUsagef("--backup: %v", err)
	}
	c.onClose(func() { _ = bf.Close() })
	st, err := bf.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("read backup: %w", err)
	}
	idx, err := batch.IndexBackup(bf, st.Size())
	if err != nil {
		return nil, nil, err
	}
	rf, err := os.Open(cfg.In)
	if err != nil {
		return nil, nil, rollbackUsagef("--results: %v", err)
	}
	defer rf.Close()
	if c.print, err = batch.Fingerprint(io.MultiReader(rf, io.NewSectionReader(bf, 0, st.Size()))); err != nil {
		return nil, nil, err
	}
	src, err := batch.OpenRollback(cfg.In, idx, lines)
	if err != nil {
		return nil, nil, err
	}
	c.onClose(func() { _ = src.Close() })
	c.log.Info("rollback", zap.String("results", cfg.In), zap.String("backup", cfg.Backup), zap.Int("backed_up_rows", idx.Len()))
	return src, &batch.Rollback{Index: idx}, nil
}

// executeSource runs the pool over src into the results file with progress
// shown, and closes the file.
func (c *command) executeSource(ctx context.Context, src batch.Source, res *batch.Results) (batch.Summary, error) {
	cfg := c.cfg
	every := cfg.ProgressEvery
	if cfg.NoProgress {
		every = 0
	}
	prog := newProgress(progressOptions{Out: c.status, TTY: c.tty, Every: every, Log: c.log, Pacer: c.runner.Pacer})
	c.runner.Hooks = combineHooks(append(c.hooks, prog.Hooks())...)
	progCtx, stopProg := context.WithCancel(context.WithoutCancel(ctx))
	var progWG sync.WaitGroup
	progWG.Go(func() { prog.Run(progCtx) })
	c.log.Info("start", zap.String("results", cfg.In), zap.String("out", cfg.Out), zap.Bool("dry_run", cfg.Batch.DryRun),
		zap.Int("workers", cfg.Batch.Workers))
	sum, runErr := c.runner.RunSource(ctx, src, res.Writer)
	stopProg()
	progWG.Wait()
	_ = c.log.Sync()
	prog.Finish()
	if err := res.Close(); err != nil && runErr == nil {
		runErr = err
	}
	c.log.Info("rollback summary", zap.Int("unlinked", sum.Counts[batch.StatusUnlinked]),
		zap.Int("already_unlinked", sum.Counts[batch.StatusAlreadyUnlinked]))
	return sum, runErr
}
