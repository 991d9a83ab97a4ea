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

// runOnePass is Run for a Config.OnePass run without a Runner.Plan. Three
// goroutines share the work, handing rows on in batches: the reader
// (readBatches) parses the rows, which only it can do, one after the
// other; this one checks them, hashes their ids and decides each row's
// verdict with a conflictIndex (the verdict BuildPlan's Plan would give:
// indexBatch); the writer (writeBatches) writes their results, as the
// pool would write them. Rows of Runner.Done are indexed, since later rows
// are checked against them, but get no result. Once ctx is cancelled or
// the results cannot be written, the rows left are only read and counted,
// for the summary. Its errors are those of Run.
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

	full, indexed, free := make(chan *rowBatch, rowBatches), make(chan *rowBatch, rowBatches), make(chan *rowBatch, rowBatches)
	for range rowBatches {
		free <- &rowBatch{parsed: make([]Row, 0, rowBatchRows), rows: make([]passRow, 0, rowBatchRows)}
	}
	var stages sync.WaitGroup
	var failed atomic.Bool // the writer met an error: index no more rows
	src.rd.unchecked = true
	stages.Go(func() { readBatches(src.rd, free, full) })
	stages.Go(func() { writeBatches(ctx, w, &failed, indexed, free) })
	k := x.keyer()
	size := inputSize(src)
	rows := 0
	var readErr, indexErr error
	for b := range full {
		if rows == 0 && size > 0 && b.read > 0 {
			// Room for the users of as many rows as the input holds
			// if its rows are as long as its first ones.
			x.reserve(2 * int(size*int64(len(b.parsed))/b.read))
		}
		rows += len(b.parsed)
		b.rows, b.indexed = b.rows[:0], 0
		if indexErr == nil && !failed.Load() && ctx.Err() == nil {
			for i := range b.parsed {
				row := &b.parsed[i]
				row.check()
				b.rows = append(b.rows, k.row(row))
			}
			indexErr = r.indexBatch(x, b)
		}
		if b.err != nil && b.err != io.EOF {
			readErr = b.err
		}
		indexed <- b
	}
	close(indexed)
	stages.Wait()
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
// to its index, then its writer.
type rowBatch struct {
	parsed []Row     // the rows as the reader parsed them, unchecked
	rows   []passRow // the rows checked and hashed, for the index
	err    error     // what ended reading after rows: io.EOF, an I/O error; nil if not
	read   int64     // bytes of the input read by then (Reader.bytesRead)
	// indexed is the number of rows, from the first, whose verdicts the
	// index decided; the others get no result.
	indexed int
}

// rowBatchRows is the most rows of a rowBatch, and rowBatches the number of
// batches, full or free, a one-pass run uses: enough for each of its
// goroutines to have one at hand while the others work on theirs.
const (
	rowBatchRows = 1024
	rowBatches   = 8
)

// readBatches reads the rows of rd in batches, taking each empty batch from
// free and handing it filled to full, until reading ends (the last batch
// says why); then it closes full.
func readBatches(rd *Reader, free <-chan *rowBatch, full chan<- *rowBatch) {
	defer close(full)
	for {
		b := <-free
		b.parsed, b.err = b.parsed[:0], nil
		for n := 0; n < rowBatchRows; n++ {
			b.parsed = append(b.parsed, Row{})
			if err := rd.next(&b.parsed[n]); err != nil {
				b.parsed, b.err = b.parsed[:n], err
				break
			}
		}
		b.read = rd.bytesRead()
		full <- b
		if b.err != nil {
			return
		}
	}
}

// inputSize returns the size in bytes of the input of src, when it is
// known (its reader has a Size method, as a file's section has) and its
// text is UTF-8, as its rows are read; 0 otherwise.
func inputSize(src *CSVSource) int64 {
	s, ok := src.in.(interface{ Size() int64 })
	if !ok || src.rd.Encoding() != "UTF-8" {
		return 0
	}
	return s.Size()
}

// touchRows is how many rows' slots indexBatch touches (see
// conflictIndex.touch) before adding them.
const touchRows = 64

// indexBatch adds the rows of b to the index and records their verdicts
// in them, and in b.indexed how many it did: all, or those before the
// row whose error it returns.
func (r *Runner) indexBatch(x *conflictIndex, b *rowBatch) error {
	var sum uint64
	defer func() { touchSink.Add(sum) }()
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
			b.indexed++
			switch {
			case r.Done.Has(row.line):
				row.status = ""
			case held:
				verdict := v.verdict()
				row.status, row.msg = verdict.Status, verdict.Err
			default:
				row.status, row.msg = StatusPlanned, ""
			}
		}
	}
	return nil
}

// writeBatches writes the results of the batches the index hands on, and
// gives each batch back to free, until indexed is closed; then it flushes.
// Once ctx is cancelled or a write failed (failed is then set), it writes
// no more.
func writeBatches(ctx context.Context, w *writer, failed *atomic.Bool, indexed <-chan *rowBatch, free chan<- *rowBatch) {
	debug := w.log.Core().Enabled(zapcore.DebugLevel)
	var results []Result // reused
	for b := range indexed {
		if w.err == nil && ctx.Err() == nil {
			before := w.written
			results = writeBatch(w, b, results[:0], debug)
			if w.err != nil {
				failed.Store(true)
			} else if w.written/flushRows != before/flushRows {
				w.flush()
			}
		}
		free <- b
	}
	w.flush()
}

// writeBatch writes the results of the indexed rows of b but for those of
// Runner.Done (no status), counts and logs them, and tells the hook; it
// is writer.record for results that need no acknowledgement (a file's),
// which it keeps nothing of for the flush. It builds the results in
// results, and returns it. debug says whether the log takes debug lines: a
// one-pass run's rows send no request, so only the invalid ones have a
// line at a higher level (see logResult).
func writeBatch(w *writer, b *rowBatch, results []Result, debug bool) []Result {
	for i := range b.rows[:b.indexed] {
		row := &b.rows[i]
		if row.status == "" {
			continue
		}
		results = append(results, Result{Line: row.line, Primary: row.primary, Secondary: row.secondary,
			SecondaryProvider: row.provider, Status: row.status, Error: row.msg})
	}
	n, err := appendResults(w.out, results)
	w.written += n
	var status Status // counted by runs of one status
	count := 0
	for i := range results[:n] {
		res := &results[i]
		if res.Status != status {
			if count > 0 {
				w.sum.Counts[status] += count
			}
			status, count = res.Status, 0
		}
		count++
		if res.Warning != "" {
			w.sum.Warnings[res.Warning]++
		}
		if res.Status == StatusInvalid || debug {
			logResult(w.log, *res)
		}
		if w.hook != nil {
			w.hook(*res)
		}
	}
	if count > 0 {
		w.sum.Counts[status] += count
	}
	if err != nil {
		w.fail(err)
	}
	return results
}

// appendResults appends results to out, with one call when out is a
// *ResultWriter, and returns how many it appended: all, or those before
// the one whose error it returns.
func appendResults(out Sink, results []Result) (int, error) {
	if rw, ok := out.(*ResultWriter); ok {
		return rw.appendAll(results)
	}
	for i := range results {
		if err := out.Append(results[i]); err != nil {
			return i, err
		}
	}
	return len(results), nil
}

// touchSink receives the sums of touched keys, so that the compiler keeps
// the reads.
var touchSink atomic.Uint64
