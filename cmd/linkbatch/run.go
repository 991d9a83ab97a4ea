package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/report"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

const mainUsage = `Usage: linkbatch <command> [flags]

Commands:
  run       link the pairs of a CSV file or a queue (see 'linkbatch run --help')
  plan      plan the pairs from an Auth0 user export (see 'linkbatch plan --help')
  rollback  undo the links of a run from its backup (see 'linkbatch rollback --help')
  enqueue   add the pairs of a CSV file to a Redis stream (see 'linkbatch enqueue --help')
  version   print the version
`

// run is the whole program but for the process: main hands it the
// arguments (without the program name), the standard streams, the
// environment as getenv and the interrupt signals (SIGINT, SIGTERM) it
// receives, and maps the error it returns to an exit code. run touches no
// other global state of the process, so tests call it directly; signals may
// be nil.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, signals <-chan os.Signal) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return usagef("no command given")
	}
	switch args[0] {
	case "run":
		cfg, err := parseRunFlags(args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		c := &command{cfg: cfg, stdin: stdin, stdout: stdout, stderr: stderr}
		defer c.close()
		return c.run(ctx, signals)
	case "plan":
		return planCommand(ctx, args[1:], stdout, stderr, signals)
	case "rollback":
		return rollbackCommand(ctx, args[1:], stdout, stderr, getenv, signals)
	case "enqueue":
		return enqueueCommand(ctx, args[1:], stdin, stdout, stderr, getenv)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	default:
		fmt.Fprint(stderr, mainUsage)
		return usagef("unknown command %q", args[0])
	}
}

// command is one 'linkbatch run' going through its stages, in order:
// start logging and the signal watcher, claim the results file, open the
// input, build the client (or the simulated tenant) and pacer, serve
// metrics, open the results file, run the batch, and report. Each stage
// registers what must be undone at the end with onClose. A command is used
// by one goroutine.
type command struct {
	cfg            *config
	stdin          io.Reader
	stdout, stderr io.Writer

	status *statusWriter // stderr, keeping log lines above a progress bar
	tty    bool          // a progress bar is drawn on stderr
	log    *zap.Logger
	kill   chan struct{} // closed by a second signal
	lock   *batch.ResultsLock
	open   func() (io.ReadCloser, error) // reads the input afresh
	plan   *batch.Plan
	print  string // the input's SHA-256; empty for a stream --out
	runner *batch.Runner
	sim    *simulation
	hooks  []batch.Hooks
	emails *report.Emails // for the report, with --report and users read

	// printLater, when set, waits for the input's SHA-256, read in the
	// background (see openInput), and sets print.
	printLater func() (string, error)

	closers []func() // run by close, last first
}

// onClose registers f to run when the command ends, before those
// registered earlier.
func (c *command) onClose(f func()) { c.closers = append(c.closers, f) }

// close undoes every stage, last first.
func (c *command) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// run goes through the stages of the command.
func (c *command) run(ctx context.Context, signals <-chan os.Signal) error {
	c.startLog()
	ctx = c.watchSignals(ctx, signals)
	if c.cfg.queue != nil {
		return c.runQueue(ctx)
	}
	// Nothing is read, sent or written before the results file is ours.
	if err := c.claimResults(); err != nil {
		return err
	}
	if err := c.openInput(); err != nil {
		return err
	}
	// Every setting is checked before the results file is created, so a
	// mistake leaves nothing behind.
	if err := c.buildRunner(); err != nil {
		return err
	}
	if err := c.openBackup(); err != nil {
		return err
	}
	if err := c.startMetrics(ctx); err != nil {
		return err
	}
	res, err := c.openResults()
	if err != nil {
		return err
	}
	sum, runErr := c.execute(ctx, res)
	return c.finish(sum, res.Kept, runErr)
}

// startLog starts the run's logger on stderr and warns of secrets given as
// flags.
func (c *command) startLog() {
	// On a terminal a progress bar is drawn on stderr's last line; the
	// status writer keeps log lines above it.
	terminal := isTerminal(c.stderr)
	c.tty = c.cfg.Progress || (!c.cfg.NoProgress && terminal)
	if c.cfg.LogFormat == "" {
		// A person at a terminal reads the human format; a program (a
		// pipe, a file, a log collector) gets JSON.
		c.cfg.LogFormat = "json"
		if terminal {
			c.cfg.LogFormat = "human"
		}
	}
	c.status = newStatusWriter(c.stderr)
	log, stopLog := newLogger(c.cfg, c.status)
	c.log = log
	c.onClose(stopLog)
	for _, name := range c.cfg.secretFlags {
		log.Warn("a secret was given on the command line, where other users can see it in ps and it lands in shell history; prefer the environment variable",
			zap.String("flag", "--"+name))
	}
}

// watchSignals returns ctx cancelled by the first signal: no new rows are
// started and rows in flight may finish within --grace. A second signal
// closes c.kill, which cancels them at once.
func (c *command) watchSignals(ctx context.Context, signals <-chan os.Signal) context.Context {
	ctx, stop := context.WithCancel(ctx)
	c.onClose(stop)
	c.kill = make(chan struct{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	c.onClose(wg.Wait)
	c.onClose(func() { close(done) })
	log, grace, kill := c.log, c.cfg.Batch.Grace, c.kill
	wg.Go(func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case s := <-signals:
				n++
				if n == 1 {
					log.Warn("signal received: no new rows are started; rows in flight may finish", zap.String("signal", s.String()), zap.Duration("grace", grace))
					stop()
					continue
				}
				log.Warn("second signal: cancelling rows in flight", zap.String("signal", s.String()))
				close(kill)
				return
			}
		}
	})
	return ctx
}

// claimResults locks the results file for the run (see
// batch.ClaimResults).
func (c *command) claimResults() error {
	lock, err := batch.ClaimResults(c.resultsOptions())
	if err != nil {
		return err
	}
	c.lock = lock
	c.onClose(lock.Release)
	return nil
}

// resultsOptions says which results file the run writes and how.
func (c *command) resultsOptions() batch.ResultsOptions {
	return batch.ResultsOptions{
		Out: c.cfg.Out, Stream: c.cfg.outStream,
		Resume: c.cfg.Resume, RetryFailed: c.cfg.RetryFailed, DryRun: c.cfg.Batch.DryRun,
		Stdout: c.stdout, Log: c.log,
	}
}

// openInput opens the input, refuses to overwrite a results file that is
// not resumed, and reads the input twice at once, on two cores: to check
// it (the plan) and to fingerprint it. A dry run that reads no user
// (batch.Config.OnePass) checks the input as it runs: here only its header
// is read, and the fingerprint is left to go on beside the run (see
// fingerprintLater).
func (c *command) openInput() error {
	open, cleanup, err := inputOpener(c.cfg.In, c.stdin)
	if err != nil {
		return err
	}
	c.open = open
	c.onClose(cleanup)
	if err := c.resultsOptions().CheckOverwrite(); err != nil {
		return err
	}
	if !c.cfg.outStream {
		c.printLater = c.fingerprintLater(open)
	}
	if c.cfg.Batch.OnePass() {
		src, err := c.cfg.Format.OpenCSV(open)
		if err != nil {
			return err
		}
		_ = src.Close() // a reader of the input, which has nothing to flush
		return nil
	}
	if c.plan, err = c.cfg.Format.ReadPlan(open); err != nil {
		return err
	}
	if c.printLater != nil {
		_, err = c.printLater()
	}
	return err
}

// fingerprintLater starts reading the input's SHA-256 in a goroutine, and
// returns a function that waits for it and sets c.print. Its read is
// opened first, before this returns: the other reads of the input check
// their blocks against those it records as it goes (see input), and it
// waits for none of them. The command's close stops the read and waits
// for the goroutine.
func (c *command) fingerprintLater(open func() (io.ReadCloser, error)) func() (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var (
		print string
		err   error
	)
	in, err := open()
	go func() {
		defer close(done)
		if err != nil {
			err = fmt.Errorf("open input: %w", err)
			return
		}
		print, err = fingerprintInput(ctx, in)
	}()
	c.onClose(func() {
		cancel()
		<-done
	})
	return func() (string, error) {
		<-done
		c.print = print
		return print, err
	}
}

// buildRunner builds the batch runner, with a client and a pacer unless a
// dry run reads no user, talking to the simulated tenant with --simulate.
func (c *command) buildRunner() error {
	cfg := c.cfg
	c.runner = &batch.Runner{Config: cfg.Batch, Log: c.log, Kill: c.kill, Plan: c.plan, Format: cfg.Format}
	if cfg.Batch.DryRun && !cfg.Batch.ReadsUsers() {
		return nil
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: cfg.Batch.Workers,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	base := cfg.Domain
	if cfg.Simulate {
		sim, err := startSimulation(c.open, cfg.Format, c.log)
		if err != nil {
			return err
		}
		c.sim = sim
		c.onClose(sim.Close)
		base = sim.URL
		cfg.ClientID, cfg.ClientSecret, cfg.Token = sim.ClientID, sim.ClientSecret, ""
	}
	u, err := linker.ParseDomain(base)
	if err != nil {
		return usagef("%s: %v", envDomain, err)
	}
	var tokens linker.TokenSource
	if cfg.Token != "" {
		tokens = linker.StaticToken(cfg.Token)
	} else {
		tokens = linker.NewClientCredentials(u, cfg.ClientID, cfg.ClientSecret, cfg.Audience, hc)
	}
	if c.runner.Client, err = linker.NewClient(u, tokens, linker.WithHTTPClient(hc)); err != nil {
		return usagef("%v", err)
	}
	if c.runner.Pacer, err = ratelimit.New(cfg.Pace, linker.Retryable); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// startMetrics serves the metrics with --metrics-addr, the run's and
// extra, until the command ends.
func (c *command) startMetrics(ctx context.Context, extra ...prometheus.Collector) error {
	if c.cfg.MetricsAddr == "" {
		return nil
	}
	m := newMetrics(c.runner.Pacer)
	m.reg.MustRegister(extra...)
	stopMetrics, err := serveMetrics(context.WithoutCancel(ctx), c.cfg.MetricsAddr, m.Handler(), c.log)
	if err != nil {
		return usagef("--metrics-addr: %v", err)
	}
	log := c.log
	c.onClose(func() {
		if err := stopMetrics(); err != nil {
			log.Warn("metrics server stopped with an error", zap.Error(err))
		}
	})
	c.hooks = append(c.hooks, m.Hooks())
	return nil
}

// openResults opens the results file (see batch.OpenResults), locks it
// under any name, and gives the runner the lines already final.
func (c *command) openResults() (*batch.Results, error) {
	var (
		res *batch.Results
		err error
	)
	if c.printLater != nil {
		res, err = batch.OpenResultsLater(c.resultsOptions(), c.printLater)
	} else {
		res, err = batch.OpenResults(c.resultsOptions(), c.print)
	}
	if err != nil {
		return nil, err
	}
	// The file created or compacted is locked too, under any name.
	if err := c.lock.Hold(c.cfg.Out); err != nil {
		_ = res.Close()
		return nil, err
	}
	c.runner.Done = res.Done
	return res, nil
}

// progressEvery is the interval of progress log lines, 0 for none.
func (c *command) progressEvery() time.Duration {
	if c.cfg.NoProgress {
		return 0
	}
	return c.cfg.ProgressEvery
}

// showProgress starts the progress display, and each of also, until the
// returned stop is called; they go on through the grace period after a
// signal. It sets the runner's hooks: the command's, the display's and
// extra. open, when set, makes it the display of a run without a total (a
// queue), noting what open returns. stop waits for them, flushes the log
// and draws the final line.
func (c *command) showProgress(ctx context.Context, extra []batch.Hooks, open func() string, also ...func(context.Context)) (stop func()) {
	prog := newProgress(progressOptions{Out: c.status, TTY: c.tty, Every: c.progressEvery(), Log: c.log, Pacer: c.runner.Pacer,
		Open: open != nil, Note: open})
	hooks := append(slices.Clone(c.hooks), prog.Hooks())
	c.runner.Hooks = combineHooks(append(hooks, extra...)...)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { prog.Run(bg) })
	for _, f := range also {
		wg.Go(func() { f(bg) })
	}
	return func() {
		cancel()
		wg.Wait()
		_ = c.log.Sync() // buffered row lines go above the final bar line
		prog.Finish()
	}
}

// execute runs the batch into the results file with progress shown, and
// closes the file.
func (c *command) execute(ctx context.Context, res *batch.Results) (batch.Summary, error) {
	cfg := c.cfg
	var extra []batch.Hooks
	if cfg.Report != "" && cfg.Batch.ReadsUsers() {
		// The emails behind email warnings, kept in memory for the report
		// only (bounded as its lists are).
		c.emails = report.NewEmails(0)
		extra = append(extra, batch.Hooks{Result: c.emails.Add})
	}
	var open func() string
	if c.plan == nil {
		// A one-pass run learns its total at the end: until then its
		// progress line counts the rows done.
		open = func() string { return "" }
	}
	stopProgress := c.showProgress(ctx, extra, open)

	fields := []zap.Field{zap.String("in", cfg.In), zap.String("out", cfg.Out), zap.Bool("dry_run", cfg.Batch.DryRun)}
	if c.plan != nil {
		// A one-pass run knows its rows and index at the end: its summary
		// line gives them.
		fields = append(fields, zap.Int("rows", c.plan.Rows()), indexField(c.plan.Bytes(), c.plan.Rows()))
	}
	c.log.Info("start", append(fields,
		zap.Bool("simulate", cfg.Simulate), zap.Int("workers", cfg.Batch.Workers),
		zap.Stringer("rate", (*rateFlag)(&cfg.Pace.Rate)), zap.Int("burst", cfg.Pace.Burst), zap.Float64("share", cfg.Pace.Share))...)
	sum, runErr := c.runner.Run(ctx, c.open, res.Writer)
	stopProgress()
	if err := res.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return sum, runErr
}

// finish logs the summary, draws its table on a terminal, writes the
// report, and returns the run's error: runErr, or errProblems when rows
// (kept from an earlier run too) are invalid or failed.
func (c *command) finish(sum batch.Summary, kept batch.ResumeReport, runErr error) error {
	cfg, log := c.cfg, c.log
	extra := newSummaryExtra(cfg.Out, c.runner.Pacer)
	logSummary(log, cfg, sum, c.sim, extra.zapFields(sum)...)
	if c.tty {
		_ = log.Sync()
		writeSummaryTable(c.stderr, sum, extra)
	}
	if cfg.Report != "" {
		if err := c.writeReport(sum, time.Now()); err != nil {
			log.Warn("report not written", zap.Error(err)) // the run's outcome stands
		} else {
			log.Info("report written", zap.String("report", cfg.Report))
		}
	}
	if runErr != nil {
		return runErr
	}
	// Rows kept from an earlier run are in the results file too.
	invalid, failed := sum.Counts[batch.StatusInvalid]+kept.Invalid, sum.Counts[batch.StatusFailed]+kept.Failed
	if invalid+failed > 0 {
		return fmt.Errorf("%w (%d invalid, %d failed)", errProblems, invalid, failed)
	}
	return nil
}

// tenantName names the tenant the run read or linked in, for the report:
// its domain, "simulated", or "" when a dry run read nothing.
func (c *command) tenantName() string {
	switch {
	case c.cfg.Simulate:
		return "simulated"
	case c.runner == nil || c.runner.Client == nil:
		return ""
	}
	if u, err := linker.ParseDomain(c.cfg.Domain); err == nil {
		return u.Host
	}
	return c.cfg.Domain
}

// newLogger returns the run's logger and a function that flushes and stops
// it.
func newLogger(cfg *config, stderr io.Writer) (*zap.Logger, func()) {
	level, _ := zapcore.ParseLevel(cfg.LogLevel) // checked by Validate
	// No sampling: every row's line must reach the log. Lines are buffered
	// and written at least every second (and by Sync at exit), so that a
	// million rows do not cost a million writes.
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(stderr), Size: 256 << 10, FlushInterval: time.Second}
	if cfg.LogFormat == "human" {
		var width func() int
		if t, ok := stderr.(interface{ Width() int }); ok {
			width = t.Width // the status writer's terminal
		}
		return zap.New(newHumanCore(ws, level, width)), func() { _ = ws.Stop() }
	}
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, ws, level)), func() { _ = ws.Stop() }
}

// indexField is the log field of the conflict index's bytes per row.
func indexField(bytes, rows int) zap.Field {
	perRow := 0.0
	if rows > 0 {
		perRow = float64(bytes) / float64(rows)
	}
	return zap.Float64("index_bytes_per_row", math.Round(perRow*10)/10)
}

func logSummary(log *zap.Logger, cfg *config, sum batch.Summary, sim *simulation, rates ...zap.Field) {
	fields := []zap.Field{
		zap.Int("rows", sum.Rows),
		zap.Int("linked", sum.Counts[batch.StatusLinked]),
		zap.Int("already_linked", sum.Counts[batch.StatusAlreadyLinked]),
		zap.Int("planned", sum.Counts[batch.StatusPlanned]),
		zap.Int("invalid", sum.Counts[batch.StatusInvalid]),
		zap.Int("skipped", sum.Counts[batch.StatusSkipped]),
		zap.Int("failed", sum.Counts[batch.StatusFailed]),
		zap.Int(batch.WarnEmailMismatch, sum.Warnings[batch.WarnEmailMismatch]),
		zap.Int(batch.WarnEmailUnverified, sum.Warnings[batch.WarnEmailUnverified]),
		zap.Int("kept", sum.Kept),
		zap.Int("remaining", sum.Remaining),
		zap.Int64("requests", sum.Requests),
		zap.Int64("rate_limited", sum.RateLimited),
		zap.Int64("retries", sum.Retries),
		zap.Duration("elapsed", sum.Elapsed),
		zap.String("results", cfg.Out),
	}
	fields = append(fields, rates...)
	if sum.IndexBytes > 0 {
		fields = append(fields, indexField(sum.IndexBytes, sum.Rows))
	}
	if sim != nil {
		fields = append(fields, zap.Object("simulated_tenant", sim))
	}
	if sum.Remaining > 0 && !cfg.outStream {
		fields = append(fields, zap.String("next", "run the same command with --resume to process the remaining rows"))
	}
	log.Info("summary", fields...)
}

// inputOpener opens the input once and returns a function that reads it
// afresh each time (the run reads it more than once), always the same bytes:
// the file as it was when opened, even if it is replaced or grows meanwhile.
// A read that finds other bytes (the file was changed in place or
// truncated) fails with an error wrapping errInputChanged before it passes
// on a byte that differs (see input). Standard input is first copied to a
// temporary file. The readers are safe to use concurrently.
func inputOpener(in string, stdin io.Reader) (func() (io.ReadCloser, error), func(), error) {
	var f *os.File
	if in == "-" {
		tmp, err := os.CreateTemp("", "linkbatch-stdin-*.csv")
		if err != nil {
			return nil, nil, fmt.Errorf("spool standard input: %w", err)
		}
		_ = os.Remove(tmp.Name()) // the open handle keeps it until closed
		if _, err := io.Copy(tmp, stdin); err != nil {
			_ = tmp.Close()
			return nil, nil, fmt.Errorf("spool standard input: %w", err)
		}
		f = tmp
	} else {
		var err error
		if f, err = os.Open(in); err != nil {
			return nil, nil, usagef("--in: %v", err)
		}
	}
	cleanup := func() { _ = f.Close() }
	st, err := f.Stat()
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("read input: %w", err)
	}
	if st.IsDir() {
		cleanup()
		return nil, nil, usagef("--in: %s is a directory", in)
	}
	return newInput(f, st.Size()).open, cleanup, nil
}

// fingerprintInput returns the SHA-256 of the input in, which it closes,
// or ctx's error once it is done.
func fingerprintInput(ctx context.Context, in io.ReadCloser) (string, error) {
	defer in.Close()
	return batch.Fingerprint(ctxReader{ctx, in})
}

// ctxReader is a reader that fails with its context's error once the
// context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// writeReport writes the HTML report of the run from its results file.
func (c *command) writeReport(sum batch.Summary, now time.Time) error {
	cfg := c.cfg
	if c.printLater != nil {
		_, _ = c.printLater() // sets c.print; an error failed the run already
	}
	in, err := os.Open(cfg.Out)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer in.Close()
	f, err := os.OpenFile(cfg.Report, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) // it names users
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	err = report.Write(f, in, report.Info{
		Input: cfg.In, Results: cfg.Out, Generated: now,
		DryRun: cfg.Batch.DryRun, Verify: cfg.Batch.ReadsUsers(),
		Summary: &sum,
		Tenant:  c.tenantName(), InputSHA256: c.print, Version: versionString(), Flags: cfg.Flags,
		Emails: c.emails, ShowEmails: cfg.ReportShowEmails,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
