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
	Workers int           // rows in flight at once
	DryRun  bool          // read and validate, send nothing
	Timeout time.Duration // limit on one HTTP attempt
	// Grace is how long rows already in flight may go on after the run's
	// context is cancelled (a signal) before their requests are cancelled.
	Grace time.Duration
}

// DefaultConfig returns the default batch settings.
func DefaultConfig() Config {
	return Config{Workers: 8, Timeout: 30 * time.Second, Grace: 10 * time.Second}
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 1000:
		return fmt.Errorf("workers must be between 1 and 1000, not %d", c.Workers)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, not %s", c.Timeout)
	case c.Grace < 0:
		return fmt.Errorf("grace must not be negative, not %s", c.Grace)
	}
	return nil
}

// ErrCredentials is wrapped by the error Run returns when the tenant refused
// the credentials (401 or 403), which would fail every row alike.
var ErrCredentials = errors.New("the tenant refused the credentials")

// ErrInterrupted is wrapped by the error Run returns when its context was
// cancelled before every row was processed.
var ErrInterrupted = errors.New("interrupted")

// Summary counts what a run did.
type Summary struct {
	Rows        int            // data rows in the input
	Counts      map[string]int // results written, by status
	Kept        int            // rows kept from an earlier run (resume)
	Remaining   int            // rows with no final result yet
	Requests    int64          // HTTP requests sent to the tenant
	RateLimited int64          // 429 answers
	Retries     int64          // attempts beyond the first
	Elapsed     time.Duration
}

// Problems returns the number of rows that are invalid or failed.
func (s Summary) Problems() int { return s.Counts[StatusInvalid] + s.Counts[StatusFailed] }

// Runner links the rows of one input. Client and Pacer may be nil for a dry
// run. A Runner is used for one Run at a time.
type Runner struct {
	Config Config
	Client *linker.Client
	Pacer  *ratelimit.Pacer
	Log    *zap.Logger
	// Kill, when closed, cancels rows in flight at once, without waiting
	// for the grace period (a second signal).
	Kill <-chan struct{}
	// Done, when set, reports lines that already have a final result (a
	// resumed run); they are not processed again.
	Done func(line int) bool

	readScopeOnce sync.Once
}

// Run reads the input twice, once to validate it and find duplicates and
// conflicts, then to link each row, writing one result per row to out. Per-row
// failures are results, not errors. Run returns an error only when the run
// stopped early: the input could not be read, the results could not be
// written, the credentials were refused (ErrCredentials) or ctx was cancelled
// (ErrInterrupted). Rows not finished then have no result; a resumed run picks
// them up.
func (r *Runner) Run(ctx context.Context, open func() (io.ReadCloser, error), out *ResultWriter) (Summary, error) {
	start := time.Now()
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	sum := Summary{Counts: map[string]int{}}

	plan, err := readPlan(open)
	if err != nil {
		return sum, err
	}
	sum.Rows = plan.Rows()
	in, err := open()
	if err != nil {
		return sum, fmt.Errorf("open input: %w", err)
	}
	defer in.Close()
	rd, err := NewReader(in)
	if err != nil {
		return sum, fmt.Errorf("read input: %w", err)
	}

	// dispatch stops handing out rows; work cancels the rows in flight.
	dispatch, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	finished := make(chan struct{})
	var owners sync.WaitGroup
	owners.Go(func() {
		select {
		case <-finished:
			return
		case <-r.Kill:
			cancelWork()
			return
		case <-dispatch.Done():
		}
		t := time.NewTimer(r.Config.Grace)
		defer t.Stop()
		select {
		case <-finished:
		case <-r.Kill:
		case <-t.C:
		}
		cancelWork()
	})

	jobs := make(chan Row)
	results := make(chan Result)
	var workers sync.WaitGroup
	for range r.Config.Workers {
		workers.Go(func() {
			for row := range jobs {
				res, keep, fatal := r.process(work, row)
				if fatal != nil {
					stop(fatal)
				}
				if keep {
					results <- res
				}
			}
		})
	}

	// The writer is the only reader of results.
	var writeErr error
	written := 0
	owners.Go(func() {
		for res := range results {
			if writeErr != nil {
				continue
			}
			if err := out.Write(res); err != nil {
				writeErr = err
				stop(err)
				continue
			}
			written++
			sum.Counts[res.Status]++
			logResult(log, res)
		}
	})

	var readErr error
	emit := func(res Result) bool {
		select {
		case results <- res:
			return true
		case <-dispatch.Done():
			return false
		}
	}
read:
	for dispatch.Err() == nil {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("read input: %w", err)
			stop(readErr)
			break
		}
		if r.Done != nil && r.Done(row.Line) {
			sum.Kept++
			continue
		}
		if v, ok := plan.Verdict(row.Line); ok {
			if !emit(Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary, Status: v.Status, Error: v.Err}) {
				break
			}
			continue
		}
		if row.Err != nil { // the plan saw every bad row; this is a safety net
			if !emit(Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary, Status: StatusInvalid, Error: row.Err.Error()}) {
				break
			}
			continue
		}
		if r.Config.DryRun {
			if !emit(Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary, Status: StatusPlanned}) {
				break
			}
			continue
		}
		select {
		case jobs <- row:
		case <-dispatch.Done():
			break read
		}
	}
	close(jobs)
	workers.Wait()
	close(results)
	close(finished)
	owners.Wait()

	if r.Pacer != nil {
		st := r.Pacer.Stats()
		sum.Requests, sum.RateLimited, sum.Retries = st.Requests, st.RateLimited, st.Retries
	}
	sum.Remaining = sum.Rows - sum.Kept - written
	sum.Elapsed = time.Since(start)

	switch cause := context.Cause(dispatch); {
	case writeErr != nil:
		return sum, writeErr
	case readErr != nil:
		return sum, readErr
	case errors.Is(cause, ErrCredentials):
		return sum, cause
	case ctx.Err() != nil:
		return sum, fmt.Errorf("%w: %d rows have no result yet", ErrInterrupted, sum.Remaining)
	}
	return sum, nil
}

func readPlan(open func() (io.ReadCloser, error)) (*Plan, error) {
	in, err := open()
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	defer in.Close()
	plan, err := BuildPlan(in)
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	return plan, nil
}

// process links one valid row. It returns the row's result and whether to
// write it (a row cut short by cancellation or refused credentials has no
// result), and a fatal error that must stop the run.
func (r *Runner) process(ctx context.Context, row Row) (Result, bool, error) {
	start := time.Now()
	res := Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary}
	req, err := row.Request()
	if err != nil {
		res.Status, res.Error = StatusInvalid, err.Error()
		return res, true, nil
	}
	attempts, resp, err := r.Pacer.Do(ctx, func(ctx context.Context) (*linker.Response, error) {
		actx, cancel := context.WithTimeout(ctx, r.Config.Timeout)
		defer cancel()
		_, resp, err := r.Client.Link(actx, req)
		return resp, err
	})
	res.Attempts = attempts
	if resp != nil {
		res.HTTPStatus = resp.StatusCode
	}
	switch {
	case err == nil:
		res.Status = StatusLinked
		res.Duration = time.Since(start)
		return res, true, nil
	case ctx.Err() != nil:
		return res, false, nil
	case linker.IsAuth(err):
		return res, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	case linker.IsMaybeAlreadyLinked(err) && req.LinkWith == "":
		linked, verr := r.verify(ctx, req)
		switch {
		case ctx.Err() != nil:
			return res, false, nil
		case verr != nil:
			fail(&res, err)
			res.Error += "; " + verr.Error()
		case linked:
			res.Status = StatusAlreadyLinked
			res.ErrorCode, res.Error = "", ""
		default:
			fail(&res, err)
		}
	default:
		fail(&res, err)
	}
	res.Duration = time.Since(start)
	return res, true, nil
}

// fail fills res for a row the API refused or that ran out of retries.
func fail(res *Result, err error) {
	res.Status = StatusFailed
	var ae *linker.APIError
	if errors.As(err, &ae) {
		res.HTTPStatus = ae.Status
		res.ErrorCode = ae.Code
		res.Error = ae.Error()
	} else {
		res.Error = err.Error()
	}
	res.Retryable = errors.Is(err, ratelimit.ErrRetriesExhausted) || ae == nil
}

// errNoReadScope explains an ambiguous answer that could not be checked.
var errNoReadScope = errors.New("could not check whether the pair is already linked: the token lacks read:users (grant it to tell already-linked pairs apart)")

// verify reads the primary and reports whether the secondary identity is
// among its identities: the answer to an ambiguous 400/409 (the pair may have
// been linked by an earlier attempt whose answer was lost).
func (r *Runner) verify(ctx context.Context, req linker.LinkRequest) (bool, error) {
	var user *linker.User
	_, _, err := r.Pacer.Do(ctx, func(ctx context.Context) (*linker.Response, error) {
		actx, cancel := context.WithTimeout(ctx, r.Config.Timeout)
		defer cancel()
		u, resp, err := r.Client.GetUser(actx, req.PrimaryID, "identities")
		user = u
		return resp, err
	})
	if err != nil {
		if linker.StatusOf(err) == 403 {
			r.readScopeOnce.Do(func() {
				if r.Log != nil {
					r.Log.Warn("cannot verify ambiguous answers: the token lacks the read:users scope; such rows are reported failed")
				}
			})
			return false, errNoReadScope
		}
		return false, fmt.Errorf("verify link: %w", err)
	}
	return linker.Has(user.Identities, req.Provider, req.UserID), nil
}

func logResult(log *zap.Logger, res Result) {
	fields := []zap.Field{
		zap.Int("line", res.Line),
		zap.String("primary", res.Primary),
		zap.String("secondary", res.Secondary),
		zap.String("status", res.Status),
		zap.Int("attempts", res.Attempts),
		zap.Int("http_status", res.HTTPStatus),
		zap.Int64("duration_ms", res.Duration.Milliseconds()),
	}
	switch res.Status {
	case StatusInvalid, StatusFailed:
		fields = append(fields, zap.String("error", res.Error))
		if res.ErrorCode != "" {
			fields = append(fields, zap.String("error_code", res.ErrorCode))
		}
		log.Warn("row", fields...)
	default:
		log.Info("row", fields...)
	}
}
