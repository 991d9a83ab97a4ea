package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// Config holds the settings of one run that belong to the batch itself.
// DefaultConfig returns the defaults; Validate checks a Config.
type Config struct {
	Workers int           // most rows in flight at once
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
}

// ReadsUsers reports whether a run reads both users of each row before
// linking it (Verify, RequireVerifiedEmail); a dry run then needs
// credentials too.
func (c Config) ReadsUsers() bool { return c.Verify || c.RequireVerifiedEmail }

// DefaultConfig returns the default batch settings.
func DefaultConfig() Config {
	// 32 workers fill the largest tenant limits at a quarter second of
	// latency (100 requests/s × 0.25 s = 25 in flight); idle ones only wait
	// on the pacer.
	return Config{Workers: 32, Timeout: 30 * time.Second, Grace: 10 * time.Second}
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

// ErrEveryRowFails is matched by the *FailingAlikeError that Run returns
// when consecutive rows failed alike for a reason no row can escape.
var ErrEveryRowFails = errors.New("every row fails alike")

// abortStreak is how many rows in a row must fail alike, for a reason that
// comes from the tenant's address or the token rather than from the row
// (linker.FatalForAll), before Run stops starting rows: enough that one
// passing fault does not stop a run, few enough that a mistake costs
// seconds, not days.
const abortStreak = 5

// FailingAlikeError is the error of a run that stopped because abortStreak
// rows in a row failed alike, for a reason no row can escape.
type FailingAlikeError struct {
	Kind string // linker.FatalDNS, FatalRefused, FatalTLS or FatalTokenFormat
	Rows int    // rows in a row that failed so
	Last string // the last of their errors
}

func (e *FailingAlikeError) Error() string {
	return fmt.Sprintf("%s: %d rows in a row failed alike (%s): %s", ErrEveryRowFails, e.Rows, e.Kind, e.Last)
}

// Is reports whether target is ErrEveryRowFails.
func (e *FailingAlikeError) Is(target error) bool { return target == ErrEveryRowFails }

// failStreak counts the rows that last ended failing alike. It is safe for
// concurrent use.
type failStreak struct {
	mu   sync.Mutex
	kind string
	n    int
}

// add counts a row's result and returns the error that stops the run once
// abortStreak rows in a row failed alike; any other result starts over.
func (s *failStreak) add(res Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.fatal == "" {
		s.kind, s.n = "", 0
		return nil
	}
	if res.fatal != s.kind {
		s.kind, s.n = res.fatal, 0
	}
	if s.n++; s.n < abortStreak {
		return nil
	}
	return &FailingAlikeError{Kind: s.kind, Rows: s.n, Last: res.Error}
}

// ErrIncomplete is wrapped by the error Run returns when it read the whole
// input but some rows have no result.
var ErrIncomplete = errors.New("the run ended before every row had a result")

// ErrInterrupted is wrapped by the error Run returns when its context was
// cancelled before every row was processed.
var ErrInterrupted = errors.New("interrupted")

// Summary counts what a run did.
type Summary struct {
	Rows        int            // data rows in the input
	Counts      map[string]int // results written, by status
	Warnings    map[string]int // results written with a warning, by warning
	Kept        int            // rows kept from an earlier run (resume)
	Remaining   int            // rows with no final result yet
	Requests    int64          // HTTP requests sent to the tenant
	RateLimited int64          // 429 answers
	Retries     int64          // attempts beyond the first
	Elapsed     time.Duration
}

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
	// Done, when set, holds the lines that already have a final result (a
	// resumed run); they are not processed again.
	Done *LineSet
	// Hooks, when set, are told of the run's progress.
	Hooks Hooks
	// Plan, when set, is the input's plan, already built by BuildPlan;
	// otherwise Run builds it.
	Plan *Plan

	readScopeOnce sync.Once
}

// Hooks are optional callbacks through which a caller follows a run (a
// progress display, metrics). Attempt is called from the workers
// concurrently; Plan and Result from one goroutine at a time. They must be
// quick and must not block.
type Hooks struct {
	// Plan is called once the input has been checked, with the number of
	// data rows and the number this run will process.
	Plan func(rows, todo int)
	// Attempt is called after each HTTP request.
	Attempt func(Attempt)
	// Result is called for each result written.
	Result func(Result)
	// Active is called with +1 when a row starts and -1 when it ends.
	Active func(delta int)
}

// Run reads the input twice, once to validate it and find duplicates and
// conflicts, then to link each row, writing one result per row to out. Per-row
// failures are results, not errors. Run returns an error only when the run
// stopped early: the input could not be read (or changed), the results could
// not be written, the credentials were refused (ErrCredentials), 5 rows in
// a row failed alike for a reason no row can escape (a *FailingAlikeError,
// matching ErrEveryRowFails: see linker.FatalForAll) or ctx was cancelled
// (ErrInterrupted); or, as a safety net, when rows were left without a
// result (ErrIncomplete). Rows not started then have no result, and rows that
// failed for a reason no row can escape are failed and retryable; a resumed
// run picks both up.
func (r *Runner) Run(ctx context.Context, open func() (io.ReadCloser, error), out *ResultWriter) (Summary, error) {
	start := time.Now()
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	sum := Summary{Counts: map[string]int{}, Warnings: map[string]int{}}

	plan := r.Plan
	if plan == nil {
		var err error
		if plan, err = ReadPlan(open); err != nil {
			return sum, err
		}
	}
	sum.Rows = plan.Rows()
	if r.Hooks.Plan != nil {
		r.Hooks.Plan(sum.Rows, sum.Rows-r.Done.Len())
	}
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
	// results is buffered so that the reader and the writer run on both
	// cores: with an unbuffered channel each handoff parks one of them, and
	// a dry run of a million rows took half as long again. 1024 results are
	// a few hundred KiB at most.
	results := make(chan Result, 1024)
	var workers sync.WaitGroup
	var streak failStreak
	for range r.Config.Workers {
		workers.Go(func() {
			for row := range jobs {
				if dispatch.Err() != nil {
					continue // stopped: the row is left for a resume
				}
				if r.Hooks.Active != nil {
					r.Hooks.Active(1)
				}
				res, keep, fatal := r.process(work, row)
				if r.Hooks.Active != nil {
					r.Hooks.Active(-1)
				}
				if keep && fatal == nil {
					fatal = streak.add(res)
				}
				if fatal != nil {
					stop(fatal)
				}
				if keep {
					results <- res
				}
			}
		})
	}

	// The writer is the only reader of results. A row that sent a request
	// is flushed at once, so a crash loses at most the rows in flight; rows
	// settled without a request (planned, invalid, skipped), which a
	// resumed run settles again at no cost, are flushed in batches.
	var writeErr error
	written := 0
	record := func(res Result) {
		if writeErr != nil {
			return
		}
		if err := out.Append(res); err != nil {
			writeErr = err
			stop(err)
			return
		}
		written++
		sum.Counts[res.Status]++
		if res.Warning != "" {
			sum.Warnings[res.Warning]++
		}
		logResult(log, res)
		if r.Hooks.Result != nil {
			r.Hooks.Result(res)
		}
	}
	flush := func() {
		if writeErr != nil {
			return
		}
		if err := out.Flush(); err != nil {
			writeErr = err
			stop(err)
		}
	}
	owners.Go(func() {
		const batchRows, batchWait = 4096, 50 * time.Millisecond
		idle := time.NewTimer(batchWait)
		defer idle.Stop()
		pending := 0
		for {
			select {
			case res, ok := <-results:
				if !ok {
					flush()
					return
				}
				record(res)
				pending++
				switch {
				case res.Attempts > 0 || pending >= batchRows:
					flush()
					pending = 0
				case pending == 1:
					idle.Reset(batchWait)
				}
			case <-idle.C:
				if pending > 0 {
					flush()
					pending = 0
				}
			}
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
			readErr = err // wrapped by Next
			stop(readErr)
			break
		}
		if r.Done.Has(row.Line) {
			continue
		}
		if res, ok := r.settle(plan, row); ok {
			if !emit(res) {
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
	// Every kept line counts, also those past where an interrupted run
	// stopped reading.
	sum.Kept = r.Done.Len()
	sum.Remaining = sum.Rows - sum.Kept - written
	sum.Elapsed = time.Since(start)

	switch cause := context.Cause(dispatch); {
	case writeErr != nil:
		return sum, writeErr
	case readErr != nil:
		return sum, readErr
	case errors.Is(cause, ErrCredentials), errors.Is(cause, ErrEveryRowFails):
		return sum, cause
	case ctx.Err() != nil:
		return sum, fmt.Errorf("%w: %d rows have no result yet", ErrInterrupted, sum.Remaining)
	case sum.Remaining > 0:
		// A safety net: every way of stopping early is an error above.
		return sum, fmt.Errorf("%w: %d rows have no result", ErrIncomplete, sum.Remaining)
	}
	return sum, nil
}

// ReadPlan opens the input and builds its plan.
func ReadPlan(open func() (io.ReadCloser, error)) (*Plan, error) {
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

// settle returns the result of a row that needs no request: a row the plan
// holds back (invalid, a conflict, a duplicate), a row that could not be
// read (the plan saw every one; this is a safety net), or a row of a dry
// run that reads nothing.
func (r *Runner) settle(plan *Plan, row Row) (Result, bool) {
	res := Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary}
	switch v, held := plan.Verdict(row.Line); {
	case held:
		res.Status, res.Error = v.Status, v.Err
	case row.Err != nil:
		res.Status, res.Error = StatusInvalid, row.Err.Error()
	case r.Config.DryRun && !r.Config.ReadsUsers():
		res.Status = StatusPlanned
	default:
		return Result{}, false
	}
	return res, true
}

// process handles one valid row: reads the users first when asked to, then
// links. It returns the row's result and whether to write it (a row cut
// short by cancellation or refused credentials has no result), and a fatal
// error that must stop the run.
func (r *Runner) process(ctx context.Context, row Row) (Result, bool, error) {
	start := time.Now()
	res := Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary}
	res, keep, fatal := r.processRow(ctx, row, res)
	res.Duration = time.Since(start)
	return res, keep, fatal
}

func (r *Runner) processRow(ctx context.Context, row Row, res Result) (Result, bool, error) {
	req, err := row.Request()
	if err != nil {
		res.Status, res.Error = StatusInvalid, err.Error()
		return res, true, nil
	}
	if r.Config.ReadsUsers() {
		done, keep, fatal := r.inspect(ctx, req, &res)
		if done || !keep || fatal != nil {
			return res, keep, fatal
		}
	}
	if r.Config.DryRun {
		res.Status = StatusPlanned
		return res, true, nil
	}
	attempts, resp, err := r.do(ctx, func(ctx context.Context) (*linker.Response, error) {
		actx, cancel := context.WithTimeout(ctx, r.Config.Timeout)
		defer cancel()
		t0 := time.Now()
		_, resp, err := r.Client.Link(actx, req)
		r.attempt("link", resp, err, t0)
		return resp, err
	})
	res.Attempts += attempts
	if resp != nil {
		res.HTTPStatus = resp.StatusCode
	}
	switch {
	case err == nil && resp != nil && resp.StatusCode != http.StatusCreated && req.LinkWith == "":
		// A 2xx that the API does not document for a link: read the
		// primary to see whether the link happened.
		linked, verr := r.verify(ctx, req, &res)
		switch {
		case ctx.Err() != nil:
			return res, false, nil
		case linker.IsAuth(verr):
			return res, false, fmt.Errorf("%w: %w", ErrCredentials, verr)
		case verr != nil:
			res.Status, res.Retryable = StatusFailed, !errors.Is(verr, errNoReadScope)
			res.Error = fmt.Sprintf("the link was answered %d, not 201; %v", resp.StatusCode, verr)
		case linked:
			res.Status = StatusLinked
			res.Error = fmt.Sprintf("note: the link was answered %d, not 201; reading the primary shows the link", resp.StatusCode)
		default:
			res.Status = StatusFailed
			res.Error = fmt.Sprintf("the link was answered %d, not 201, but the primary does not hold the secondary identity", resp.StatusCode)
		}
		return res, true, nil
	case err == nil:
		// A 2xx status line means the link happened, whatever its body.
		res.Status = StatusLinked
		switch {
		case resp != nil && resp.BodyErr != nil:
			res.Error = "note: linked, but the answer's body was unusable: " + resp.BodyErr.Error()
		case resp != nil && resp.StatusCode != http.StatusCreated:
			res.Error = fmt.Sprintf("note: the link was answered %d, not 201", resp.StatusCode)
		}
		return res, true, nil
	case ctx.Err() != nil:
		return res, false, nil
	case linker.IsAuth(err):
		return res, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	case linker.IsMaybeAlreadyLinked(err) && req.LinkWith == "":
		linked, verr := r.verify(ctx, req, &res)
		switch {
		case ctx.Err() != nil:
			return res, false, nil
		case linker.IsAuth(verr):
			return res, false, fmt.Errorf("%w: %w", ErrCredentials, verr)
		case verr != nil:
			// The outcome is unknown: the link may have happened. A resume
			// checks again, unless the token cannot read users at all.
			fail(&res, err)
			res.Error += "; " + verr.Error()
			res.Retryable = !errors.Is(verr, errNoReadScope)
		case linked:
			res.Status = StatusAlreadyLinked
			res.ErrorCode, res.Error = "", ""
		default:
			fail(&res, err)
		}
	default:
		fail(&res, err)
	}
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
	if res.fatal = linker.FatalForAll(err); res.fatal != "" {
		// The cause is the tenant's address or the token, not the row: once
		// it is fixed, a resumed run tries the row again.
		res.Retryable = true
	}
}

// errNoReadScope explains an ambiguous answer that could not be checked.
var errNoReadScope = errors.New("could not check whether the pair is already linked: the token lacks read:users (grant it to tell already-linked pairs apart)")

// verify reads the primary and reports whether the secondary identity is
// among its identities: the answer to an ambiguous 400/409 (the pair may have
// been linked by an earlier attempt whose answer was lost).
func (r *Runner) verify(ctx context.Context, req linker.LinkRequest, res *Result) (bool, error) {
	user, err := r.getUser(ctx, req.PrimaryID, res)
	if err != nil {
		if linker.IsForbidden(err) {
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

// inspect reads both users of a row before it is linked (--verify,
// --require-verified-email). It reports done when the row's result is
// settled without a link: the pair is already linked, a user does not
// exist, or the emails fail --require-verified-email. keep and fatal are as
// for process.
func (r *Runner) inspect(ctx context.Context, req linker.LinkRequest, res *Result) (done, keep bool, fatal error) {
	settle := func(status, msg string, httpStatus int) (bool, bool, error) {
		res.Status, res.Error, res.HTTPStatus = status, msg, httpStatus
		return true, true, nil
	}
	check := func(err error, field string) (bool, bool, error) {
		switch {
		case ctx.Err() != nil:
			return true, false, nil
		case linker.IsAuth(err):
			return true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
		case linker.IsNotFound(err):
			return settle(StatusInvalid, field+": no such user in the tenant", 404)
		}
		fail(res, err)
		return true, true, nil
	}
	primary, err := r.getUser(ctx, req.PrimaryID, res)
	if err != nil {
		return check(err, "primary_user_id")
	}
	if req.LinkWith == "" && linker.Has(primary.Identities, req.Provider, req.UserID) {
		return settle(StatusAlreadyLinked, "", 200)
	}
	if req.LinkWith != "" {
		if r.Config.RequireVerifiedEmail {
			return settle(StatusInvalid, "link_with: the secondary's email cannot be read from its token; --require-verified-email refuses such rows", 0)
		}
		return false, true, nil
	}
	secondary, err := r.getUser(ctx, req.Provider+"|"+req.UserID, res)
	if err != nil {
		if linker.IsNotFound(err) {
			return settle(StatusInvalid, "secondary_user_id: no such user in the tenant (it may be linked into another account already)", 404)
		}
		return check(err, "secondary_user_id")
	}
	res.Warning = emailWarning(primary, secondary)
	if r.Config.RequireVerifiedEmail && res.Warning != "" {
		msg := "refused by --require-verified-email: the two users' emails differ"
		if res.Warning == WarnEmailUnverified {
			msg = "refused by --require-verified-email: an email is not verified"
		}
		return settle(StatusInvalid, msg, 0)
	}
	return false, true, nil
}

// emailWarning compares two users' emails: linking accounts whose emails
// differ, or on an email nobody verified, risks an account takeover.
func emailWarning(a, b *linker.User) string {
	switch {
	case a.Email == "" || b.Email == "" || !strings.EqualFold(a.Email, b.Email):
		return WarnEmailMismatch
	case !a.EmailVerified || !b.EmailVerified:
		return WarnEmailUnverified
	}
	return ""
}

// getUser reads a user through the pacer, adding its requests to res.
func (r *Runner) getUser(ctx context.Context, id string, res *Result) (*linker.User, error) {
	var user *linker.User
	n, resp, err := r.do(ctx, func(ctx context.Context) (*linker.Response, error) {
		actx, cancel := context.WithTimeout(ctx, r.Config.Timeout)
		defer cancel()
		t0 := time.Now()
		u, resp, err := r.Client.GetUser(actx, id, "user_id", "email", "email_verified", "identities")
		r.attempt("get_user", resp, err, t0)
		user = u
		return resp, err
	})
	res.Attempts += n
	if resp != nil {
		res.HTTPStatus = resp.StatusCode
	}
	return user, err
}

// maxLogField is the most bytes of one text field that a log line holds.
const maxLogField = 256

// logText returns s cut to maxLogField bytes (at a rune boundary), marked
// with its full length when cut.
func logText(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	cut := maxLogField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

func logResult(log *zap.Logger, res Result) {
	fields := []zap.Field{
		zap.Int("line", res.Line),
		zap.String("primary", logText(res.Primary)),
		zap.String("secondary", logText(res.Secondary)),
		zap.String("status", res.Status),
		zap.Int("attempts", res.Attempts),
		zap.Int("http_status", res.HTTPStatus),
		zap.Int64("duration_ms", res.Duration.Milliseconds()),
	}
	if res.Warning != "" {
		fields = append(fields, zap.String("warning", res.Warning))
	}
	switch res.Status {
	case StatusInvalid, StatusFailed:
		fields = append(fields, zap.String("error", logText(res.Error)))
		if res.ErrorCode != "" {
			fields = append(fields, zap.String("error_code", logText(res.ErrorCode)))
		}
		log.Warn("row", fields...)
	default:
		log.Info("row", fields...)
	}
}
