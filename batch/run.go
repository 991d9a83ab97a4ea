package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// Config holds the settings of one run that belong to the batch itself.
// DefaultConfig returns the defaults; Validate checks a Config.
type Config struct {
	// Workers is the most rows in flight at once. Within it, a run keeps
	// as many in flight as the pacer's pace times the tenant's latency
	// asks for, and the tokens of the tenant's burst until its rate is
	// known (see ratelimit.Pacer.InFlight), handing out a row only while
	// fewer are in flight; without a pacer (a dry run), min(Workers, 32).
	Workers int
	DryRun  bool          // read and validate, send nothing
	Timeout time.Duration // limit on one HTTP attempt
	// Grace is how long rows already in flight may go on after the run's
	// context is cancelled (a signal) before their requests are cancelled.
	Grace time.Duration
	// Verify reads both users of each valid row before anything else (GETs
	// only): a dry run then reports rows already linked, users that do not
	// exist, and email warnings.
	Verify bool
	// RequireVerifiedEmail reads both users first and refuses (invalid, no
	// link sent) a pair whose emails differ or are not both verified.
	RequireVerifiedEmail bool
	// Merge merges the secondary's metadata into the primary's before
	// linking (a real run), or shows what it would merge (a dry run with
	// Verify).
	Merge MergePolicy
	// Fresh is how old a read of the primary may be at its merge before it
	// is read again; zero means DefaultFresh.
	Fresh time.Duration
}

// ReadsUsers reports whether a run reads both users of each row before
// linking it (Verify, RequireVerifiedEmail); a dry run then needs
// credentials too.
func (c Config) ReadsUsers() bool { return c.Verify || c.RequireVerifiedEmail }

// DefaultConfig returns the default batch settings.
func DefaultConfig() Config {
	// 2,000 rows in flight fill the largest tenant limits at a quarter
	// second of latency (5,000 requests/s × 0.25 s × 1.25 = 1,563); a run
	// keeps only as many in flight as its pace needs.
	return Config{Workers: 2000, Timeout: 30 * time.Second, Grace: 10 * time.Second, Merge: MergeNone}
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Workers > MaxWorkers:
		return fmt.Errorf("workers must be between 1 and %d, not %d", MaxWorkers, c.Workers)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, not %s", c.Timeout)
	case c.Grace < 0:
		return fmt.Errorf("grace must not be negative, not %s", c.Grace)
	case c.Fresh < 0:
		return fmt.Errorf("fresh must not be negative, not %s", c.Fresh)
	}
	if _, err := ParseMergePolicy(string(c.Merge)); err != nil {
		return err
	}
	return nil
}

// MaxWorkers is the largest Config.Workers.
const MaxWorkers = 10000

// ErrIncomplete is wrapped by the error Run returns when it read the whole
// input but some rows have no result.
var ErrIncomplete = errors.New("the run ended before every row had a result")

// ErrInterrupted is wrapped by the error Run returns when its context was
// cancelled before every row was processed.
var ErrInterrupted = errors.New("interrupted")

// Summary counts what a run did.
type Summary struct {
	Rows        int            // data rows in the input (without a plan: rows read)
	Counts      map[Status]int // results written, by status
	Warnings    map[string]int // results written with a warning, by warning
	Kept        int            // rows kept from an earlier run (resume; Row.Kept)
	Redelivered int            // rows handed back to their source without a result (Redeliverer)
	Remaining   int            // rows with no final result yet
	Requests    int64          // HTTP requests sent to the tenant
	RateLimited int64          // 429 answers
	Retries     int64          // attempts beyond the first
	Elapsed     time.Duration
	// IndexBytes is the most memory the conflict index of a one-pass run
	// held (see Config.OnePass); 0 for other runs, whose Plan reports it.
	IndexBytes int
}

// Runner links the rows of one input, a CSV file (Run) or any Source
// (RunSource). Client and Pacer may be nil for a dry run. A Runner is used
// for one run at a time.
type Runner struct {
	Config Config
	Client *linker.Client
	Pacer  *ratelimit.Pacer
	Log    *zap.Logger
	// Kill, when closed, cancels rows in flight at once, without waiting
	// for the grace period (a second signal).
	Kill <-chan struct{}
	// Done, when set, holds the lines that already have a final result (a
	// resumed run); they are not processed again.
	Done *LineSet
	// Hooks, when set, are told of the run's progress.
	Hooks Hooks
	// Plan, when set, is the input's plan, already built by BuildPlan;
	// otherwise Run builds it, and RunSource holds no row back for
	// duplicates or conflicts (a queue has no pre-pass).
	Plan *Plan
	// Format is how Run reads its CSV input (delimiter, column names).
	Format Format
	// Backup, when set, records both users of each row before anything is
	// written to them (a real run).
	Backup Backup
	// Action, when set, replaces the link of each valid row (rollback is
	// one); rows the plan holds back and dry runs are settled as before.
	Action RowAction
	// Now is the Runner's clock; nil means time.Now.
	Now func() time.Time

	readScopeOnce sync.Once
	grantReads    grantReads
}

// RowAction is what the pool does with one valid row instead of linking
// it: it returns the row's result (res holds its line and ids), whether to
// write it (false for a row cut short by cancellation), and a fatal error
// that stops the run. It is called from the workers concurrently and makes
// its requests through the Runner's pacer.
type RowAction func(ctx context.Context, r *Runner, row Row, res Result) (Result, bool, error)

// Hooks are optional callbacks through which a caller follows a run (a
// progress display, metrics). Attempt is called from the workers
// concurrently; Plan and Result from one goroutine at a time. They must be
// quick and must not block.
type Hooks struct {
	// Plan is called once the input has been checked, with the number of
	// data rows and the number this run will process (a one-pass run,
	// Config.OnePass, checks it as it goes: at the end); not at all when
	// there is no plan (RunSource without Runner.Plan).
	Plan func(rows, todo int)
	// Attempt is called after each HTTP request.
	Attempt func(Attempt)
	// Result is called for each result written.
	Result func(Result)
	// Active is called with +1 when a row starts and -1 when it ends.
	Active func(delta int)
}

// Run links the rows of a CSV input: it builds the input's plan (unless
// Runner.Plan holds it already), then reads the input again through a
// CSVSource and runs the pool over it (see RunSource), writing one result
// per row to out. A dry run that reads no user (Config.OnePass) without a
// Runner.Plan reads the input once instead, with the same results. Besides
// RunSource's errors, it returns those of ReadPlan and OpenCSV.
func (r *Runner) Run(ctx context.Context, open func() (io.ReadCloser, error), out Sink) (Summary, error) {
	start := time.Now()
	if r.Plan == nil && r.Config.OnePass() {
		return r.runOnePass(ctx, open, out, start)
	}
	plan := r.Plan
	if plan == nil {
		var err error
		if plan, err = r.Format.ReadPlan(open); err != nil {
			return newSummary(), err
		}
	}
	src, err := r.Format.OpenCSV(open)
	if err != nil {
		sum := newSummary()
		sum.Rows = plan.Rows()
		return sum, err
	}
	defer src.Close()
	return r.run(ctx, src, out, plan, start)
}

// RunSource runs the pool over the rows of src, writing one result per row
// to out, and acknowledges each row once its result is flushed. The
// verdicts of Runner.Plan (duplicates, conflicts), when set, hold rows
// back; without a plan (a queue) only each row's own checks apply, and
// Summary.Rows counts the rows read. RunSource does not close src.
//
// Per-row failures are results, not errors. RunSource returns an error
// only when the run stopped early: src failed (its error, as it is), out
// or an acknowledgement failed, the credentials were refused
// (ErrCredentials), 5 rows in a row failed alike for a reason no row can
// escape (a *FailingAlikeError, matching ErrEveryRowFails: see
// linker.FatalForAll) or ctx was cancelled (ErrInterrupted); or, as a
// safety net, when rows were left without a result (ErrIncomplete). Rows
// not started then have no result and no acknowledgement, and rows that
// failed for a reason no row can escape are failed and retryable; a
// resumed run picks both up.
func (r *Runner) RunSource(ctx context.Context, src Source, out Sink) (Summary, error) {
	return r.run(ctx, src, out, r.Plan, time.Now())
}

// ReadPlan opens the input and builds its plan. Its errors are "open
// input: ..." and "read input: ..." wrapping BuildPlan's.
func ReadPlan(open func() (io.ReadCloser, error)) (*Plan, error) {
	return Format{}.ReadPlan(open)
}

func newSummary() Summary {
	return Summary{Counts: map[Status]int{}, Warnings: map[string]int{}}
}

// run is one run of the pool: the feeder reads rows from src and settles
// those that need no request, the workers process the others, the writer
// writes and acknowledges their results, and the grace watcher cancels the
// rows in flight once the run stops. It returns the run's outcome.
func (r *Runner) run(ctx context.Context, src Source, out Sink, plan *Plan, start time.Time) (Summary, error) {
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	if plan != nil && r.Hooks.Plan != nil {
		r.Hooks.Plan(plan.Rows(), plan.Rows()-r.Done.Len())
	}
	p := newPool(ctx, r, plan)
	p.again, _ = src.(Redeliverer)
	defer p.stop(nil)
	defer p.cancelWork()
	w := &writer{out: out, log: log, hook: r.Hooks.Result, stop: p.stop, ackCtx: p.work, sum: newSummary()}

	finished := make(chan struct{})
	var owners sync.WaitGroup
	owners.Go(func() { p.watchGrace(finished) })
	owners.Go(func() { w.loop(p.results) })
	var workers sync.WaitGroup
	p.spawn = func() { workers.Go(p.worker) }
	p.grow()
	p.feed(src)
	close(p.jobs)
	workers.Wait()
	close(p.results)
	close(finished)
	owners.Wait()

	sum := p.summary(w, start)
	return sum, p.outcome(ctx, w.err, sum)
}
