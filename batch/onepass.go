package batch

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// OnePass reports whether Run reads a CSV input once rather than twice: a
// dry run that reads no user needs no pre-pass, since it sends nothing and
// the verdict of a row depends only on the rows before it (see BuildPlan).
// Run then decides each row's verdict as it reads it, writes its result
// at once, and learns the number of rows at the end (Hooks.Plan is called
// then).
func (c Config) OnePass() bool { return c.DryRun && !c.ReadsUsers() }

// runOnePass is Run for a Config.OnePass run without a Runner.Plan. Two
// goroutines share the work, handing rows over in batches: the reader
// (readBatches) reads and checks the rows and hashes their ids; this one
// decides each row's verdict with a conflictIndex (the verdict BuildPlan's
// Plan would give) and writes its result, as the pool would write it. Rows
// of Runner.Done are indexed, since later rows are checked against them,
// but get no result. Once ctx is cancelled or the results cannot be
// written, the rows left are only read and counted, for the summary. Its
// errors are those of Run.
func (r *Runner) runOnePass(ctx context.Context, open func() (io.ReadCloser, error), out Sink, start time.Time) (Summary, error) {
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	src, err := r.Format.OpenCSV(open)
	if err != nil {
		return newSummary(), err
	}
	defer src.Close()
	x := newConflictIndex()
	defer x.free()
	w := &writer{out: out, log: log, hook: r.Hooks.Result, stop: func(error) {}, ackCtx: ctx, sum: newSummary()}

	full, free := make(chan *rowBatch, rowBatches), make(chan *rowBatch, rowBatches)
	for range rowBatches {
		free <- &rowBatch{}
	}
	var reader sync.WaitGroup
	reader.Go(func() { readBatches(src.rd, x.keyer(), free, full) })
	rows := 0
	var readErr, indexErr error
	for b := range full {
		rows += len(b.rows)
		if w.err == nil && indexErr == nil && ctx.Err() == nil {
			indexErr = r.onePassBatch(x, w, b)
		}
		if b.err != nil && b.err != io.EOF {
			readErr = b.err
		}
		free <- b
	}
	reader.Wait()
	w.flush()
	if r.Hooks.Plan != nil {
		r.Hooks.Plan(rows, rows-r.Done.Len())
	}

	sum := w.sum
	if pc := r.Pacer; pc != nil {
		st := pc.Stats()
		sum.Requests, sum.RateLimited, sum.Retries = st.Requests, st.RateLimited, st.Retries
	}
	sum.Rows, sum.Kept = rows, r.Done.Len()
	sum.Remaining = sum.Rows - sum.Kept - w.written
	sum.IndexBytes = x.bytes()
	sum.Elapsed = time.Since(start)
	switch {
	case w.err != nil:
		return sum, w.err
	case indexErr != nil:
		return sum, fmt.Errorf("read input: %w", indexErr)
	case readErr != nil:
		return sum, fmt.Errorf("read input: %w", readErr)
	case ctx.Err() != nil:
		return sum, fmt.Errorf("%w: %d rows have no result yet", ErrInterrupted, sum.Remaining)
	case sum.Remaining > 0:
		return sum, fmt.Errorf("%w: %d rows have no result", ErrIncomplete, sum.Remaining)
	}
	return sum, nil
}

// rowBatch is a batch of rows on its way from the reader of a one-pass run
// to its writer.
type rowBatch struct {
	rows []passRow
	err  error // what ended reading after rows: io.EOF, an I/O error; nil if not
}

// rowBatchRows is the most rows of a rowBatch, and rowBatches the number of
// batches, full or free, a one-pass run uses: enough for the reader to
// read ahead while the rows before are written.
const (
	rowBatchRows = 1024
	rowBatches   = 4
)

// readBatches reads the rows of rd in batches, taking each empty batch from
// free and handing it filled to full, until reading ends (the last batch
// says why); then it closes full.
func readBatches(rd *Reader, k *keyer, free <-chan *rowBatch, full chan<- *rowBatch) {
	defer close(full)
	for {
		b := <-free
		b.rows, b.err = b.rows[:0], nil
		for len(b.rows) < rowBatchRows {
			row, err := rd.Next()
			if err != nil {
				b.err = err
				break
			}
			b.rows = append(b.rows, k.row(row))
		}
		full <- b
		if b.err != nil {
			return
		}
	}
}

// touchRows is how many rows' slots onePassBatch touches (see
// conflictIndex.touch) before adding them.
const touchRows = 64

// onePassBatch indexes the rows of b and, but for those of Runner.Done,
// writes their results: their verdicts, or planned. It returns the error
// that the index met, if any; the writer's is w.err.
func (r *Runner) onePassBatch(x *conflictIndex, w *writer, b *rowBatch) error {
	debug := w.log.Core().Enabled(zapcore.DebugLevel)
	var sum uint64
	for start := 0; start < len(b.rows); start += touchRows {
		end := min(start+touchRows, len(b.rows))
		for i := range b.rows[start:end] {
			sum += x.touch(b.rows[start+i].keys)
		}
		for i := range b.rows[start:end] {
			row := &b.rows[start+i]
			v, held, err := x.add(*row)
			if err != nil {
				return err
			}
			if r.Done.Has(row.line) {
				continue
			}
			res := Result{Line: row.line, Primary: row.primary, Secondary: row.secondary, SecondaryProvider: row.provider, Status: StatusPlanned}
			if held {
				verdict := v.verdict()
				res.Status, res.Error = verdict.Status, verdict.Err
			}
			if record(w, res, debug); w.err != nil {
				return nil
			}
			if w.written%flushRows == 0 {
				w.flush()
			}
		}
	}
	touchSink.Add(sum)
	return nil
}

// record is writer.record for a row that needs no acknowledgement (a
// file's): it writes, counts and logs the result, and keeps nothing for
// the flush. debug says whether the log takes debug lines: a one-pass
// run's rows send no request, so only the invalid ones have a line at a
// higher level (see logResult).
func record(w *writer, res Result, debug bool) {
	if err := w.out.Append(res); err != nil {
		w.fail(err)
		return
	}
	w.written++
	w.sum.Counts[res.Status]++
	if res.Warning != "" {
		w.sum.Warnings[res.Warning]++
	}
	if res.Status == StatusInvalid || debug {
		logResult(w.log, res)
	}
	if w.hook != nil {
		w.hook(res)
	}
}

// touchSink receives the sums of touched keys, so that the compiler keeps
// the reads.
var touchSink atomic.Uint64
