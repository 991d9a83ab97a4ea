package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// job is a row handed to a worker, with its acknowledgement.
type job struct {
	row Row
	ack AckFunc
}

// outcome is a row's result on its way to the writer, with its
// acknowledgement.
type outcome struct {
	res Result
	ack AckFunc
}

// pool is the state of one run shared by its stages. The feeder (the
// goroutine of run) owns read, kept and readErr until the workers are
// done.
type pool struct {
	r    *Runner
	plan *Plan // nil: no pre-pass verdicts
	// dispatch stops handing out rows; work cancels the rows in flight.
	dispatch   context.Context
	stop       context.CancelCauseFunc
	work       context.Context
	cancelWork context.CancelFunc
	jobs       chan job
	// results is buffered so that the feeder and the writer run on both
	// cores: with an unbuffered channel each handoff parks one of them, and
	// a dry run of a million rows took half as long again. 1024 results are
	// a few hundred KiB at most.
	results chan outcome
	streak  failStreak

	read, kept  int         // rows read from the source, and of those already done
	again       Redeliverer // the source, when it delivers rows again
	mu          sync.Mutex
	redelivered int   // rows handed back to the source; guarded by mu
	readErr     error // the source's error that ended reading

	spawn   func() // starts one more worker (see grow)
	started int    // workers started

	// busy counts the rows handed to the workers and not yet processed;
	// a worker done with one signals freed (see admit).
	busy  atomic.Int64
	freed chan struct{}
}

// grow starts workers until as many run as the pacer's pace asks for
// (see Config.Workers), and returns that number. Workers are never
// stopped before the end: one not needed waits for a row.
func (p *pool) grow() int {
	want := min(p.r.Config.Workers, dryRunWorkers)
	if pc := p.r.Pacer; pc != nil {
		want = pc.InFlight(p.r.Config.Workers)
	}
	for p.started < want {
		p.started++
		p.spawn()
	}
	return want
}

// admit waits until fewer rows are in flight than the pacer asks for now,
// then counts one more; it reports false when the run stopped first. The
// workers started for a burst outlast it; admitted by the pace of the
// moment, the extra ones wait for a row instead of for the gate, where
// every answer would reschedule them.
func (p *pool) admit() bool {
	for {
		if want := p.grow(); p.busy.Load() < int64(want) {
			p.busy.Add(1)
			return true
		}
		select {
		case <-p.freed:
		case <-p.dispatch.Done():
			return false
		}
	}
}

// release counts a row admitted by admit as processed.
func (p *pool) release() {
	p.busy.Add(-1)
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// dryRunWorkers is how many workers a run without a pacer uses at most.
const dryRunWorkers = 32

func newPool(ctx context.Context, r *Runner, plan *Plan) *pool {
	p := &pool{r: r, plan: plan, jobs: make(chan job), results: make(chan outcome, 1024), freed: make(chan struct{}, 1)}
	p.dispatch, p.stop = context.WithCancelCause(ctx)
	p.work, p.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	return p
}

// watchGrace cancels the rows in flight once the run stops handing out
// rows and the grace period has passed, at once when Runner.Kill closes,
// and not at all when finished closes first.
func (p *pool) watchGrace(finished <-chan struct{}) {
	select {
	case <-finished:
		return
	case <-p.r.Kill:
		p.cancelWork()
		return
	case <-p.dispatch.Done():
	}
	t := time.NewTimer(p.r.Config.Grace)
	defer t.Stop()
	select {
	case <-finished:
	case <-p.r.Kill:
	case <-t.C:
	}
	p.cancelWork()
}

// feed reads rows from src until its end, an error or the run stops: a row
// already done (Runner.Done) is acknowledged and passed over, a row that
// needs no request is settled here, and the others go to the workers.
func (p *pool) feed(src Source) {
	for p.dispatch.Err() == nil {
		row, ack, err := src.Read(p.dispatch)
		if errors.Is(err, ErrEndOfInput) {
			return
		}
		if err != nil {
			if !cutShort(p.dispatch, err) {
				p.readErr = err
				p.stop(err)
			}
			return
		}
		p.read++
		if !p.dispatchRow(row.Check(), ack) {
			return
		}
	}
}

// cutShort reports whether err is a Read that ended because the run
// stopped handing out rows, rather than a failure of the source.
func cutShort(dispatch context.Context, err error) bool {
	return dispatch.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// dispatchRow routes one row; it reports false when the run stopped.
func (p *pool) dispatchRow(row Row, ack AckFunc) bool {
	if row.Kept || p.r.Done.Has(row.Line) {
		p.kept++
		if err := acknowledge(p.work, row.Line, ack); err != nil {
			p.stop(err)
			return false
		}
		return true
	}
	if res, ok := p.r.settle(p.plan, row); ok {
		res.MessageID = row.MessageID
		select {
		case p.results <- outcome{res, ack}:
			return true
		case <-p.dispatch.Done():
			return false
		}
	}
	if !p.admit() {
		return false
	}
	select {
	case p.jobs <- job{row, ack}:
		return true
	case <-p.dispatch.Done():
		p.release()
		return false
	}
}

// worker processes rows until the jobs close; once the run stops it passes
// over the rows still handed to it, which are left for a resume.
func (p *pool) worker() {
	for j := range p.jobs {
		if p.dispatch.Err() != nil {
			p.release()
			continue
		}
		if p.r.Hooks.Active != nil {
			p.r.Hooks.Active(1)
		}
		res, keep, fatal := p.r.process(p.work, j.row)
		res.MessageID = j.row.MessageID
		if p.r.Hooks.Active != nil {
			p.r.Hooks.Active(-1)
		}
		p.release()
		if keep && fatal == nil {
			fatal = p.streak.add(res)
		}
		if fatal != nil {
			p.stop(fatal)
		}
		if keep && res.Status == StatusFailed && res.Retryable && p.redeliver(j.row, res) {
			continue
		}
		if keep {
			p.results <- outcome{res, j.ack}
		}
	}
}

// redeliver hands a row that failed for a transient reason back to its
// source, when the source delivers rows again (Redeliverer), instead of
// writing its result; it reports whether the row was handed back.
func (p *pool) redeliver(row Row, res Result) bool {
	if p.again == nil {
		return false
	}
	ok, err := p.again.Redeliver(p.work, row)
	if err != nil {
		p.stop(fmt.Errorf("redeliver line %d: %w", row.Line, err))
		return true // stopped: the row has no result, as one cut short
	}
	if !ok {
		return false
	}
	p.mu.Lock()
	p.redelivered++
	p.mu.Unlock()
	if p.r.Log != nil {
		p.r.Log.Info("row left for redelivery", zap.Int("line", row.Line), zap.String("message_id", logText(row.MessageID)),
			zap.String("error", logText(res.Error)))
	}
	return true
}

// summary counts what the run did.
func (p *pool) summary(w *writer, start time.Time) Summary {
	sum := w.sum
	if pc := p.r.Pacer; pc != nil {
		st := pc.Stats()
		sum.Requests, sum.RateLimited, sum.Retries = st.Requests, st.RateLimited, st.Retries
	}
	sum.Rows, sum.Kept = p.read, p.kept
	p.mu.Lock()
	sum.Redelivered = p.redelivered
	p.mu.Unlock()
	if p.plan != nil {
		// Every kept line counts, also those past where an interrupted
		// run stopped reading.
		sum.Rows, sum.Kept = p.plan.Rows(), p.r.Done.Len()
	}
	sum.Remaining = sum.Rows - sum.Kept - w.written - sum.Redelivered
	sum.Elapsed = time.Since(start)
	return sum
}

// outcome returns the error of the run, by precedence: the results could
// not be written, the source failed, a fatal cause stopped it, ctx was
// cancelled, or rows were left without a result.
func (p *pool) outcome(ctx context.Context, writeErr error, sum Summary) error {
	switch cause := context.Cause(p.dispatch); {
	case writeErr != nil:
		return writeErr
	case p.readErr != nil:
		return p.readErr
	case errors.Is(cause, ErrCredentials), errors.Is(cause, ErrEveryRowFails), errors.Is(cause, ErrBackup):
		return cause
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %d rows have no result yet", ErrInterrupted, sum.Remaining)
	case sum.Remaining > 0:
		// A safety net: every way of stopping early is an error above.
		return fmt.Errorf("%w: %d rows have no result", ErrIncomplete, sum.Remaining)
	}
	return nil
}

// acknowledge calls ack, if any, for the row at line.
func acknowledge(ctx context.Context, line int, ack AckFunc) error {
	if ack == nil {
		return nil
	}
	if err := ack(ctx); err != nil {
		return fmt.Errorf("acknowledge line %d: %w", line, err)
	}
	return nil
}

// writer is the only reader of the results: it writes them to the sink,
// counts and logs them, and acknowledges their rows once flushed. A row
// that sent a request is flushed at once, so a crash loses at most the
// rows in flight; rows settled without a request (planned, invalid,
// skipped), which a resumed run settles again at no cost, are flushed in
// batches. After the first error it writes nothing more.
type writer struct {
	out    Sink
	log    *zap.Logger
	hook   func(Result)
	stop   context.CancelCauseFunc
	ackCtx context.Context

	sum     Summary
	written int
	err     error
	pending []outcome // written, not yet flushed
}

// flushRows and flushWait bound how many results, and for how long, a
// batch of results without a request waits for its flush.
const (
	flushRows = 4096
	flushWait = 50 * time.Millisecond
)

// loop writes the results until they close, then flushes.
func (w *writer) loop(results <-chan outcome) {
	idle := time.NewTimer(flushWait)
	defer idle.Stop()
	for {
		select {
		case o, ok := <-results:
			if !ok {
				w.flush()
				return
			}
			w.record(o)
			switch n := len(w.pending); {
			case o.res.Attempts > 0 || n >= flushRows:
				w.flush()
			case n == 1:
				idle.Reset(flushWait)
			}
		case <-idle.C:
			if len(w.pending) > 0 {
				w.flush()
			}
		}
	}
}

func (w *writer) record(o outcome) {
	if w.err != nil {
		return
	}
	res := o.res
	if err := w.out.Append(res); err != nil {
		w.fail(err)
		return
	}
	w.pending = append(w.pending, o)
	w.written++
	w.sum.Counts[res.Status]++
	if res.Warning != "" {
		w.sum.Warnings[res.Warning]++
	}
	logResult(w.log, res)
	if w.hook != nil {
		w.hook(res)
	}
}

// flush flushes the sink, then acknowledges the rows it made durable.
func (w *writer) flush() {
	if w.err != nil {
		return
	}
	if err := w.out.Flush(); err != nil {
		w.fail(err)
		return
	}
	for _, o := range w.pending {
		if err := acknowledge(w.ackCtx, o.res.Line, o.ack); err != nil {
			w.fail(err)
			break
		}
	}
	w.pending = w.pending[:0]
}

func (w *writer) fail(err error) {
	w.err = err
	w.stop(err)
}
