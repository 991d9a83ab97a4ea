package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrEndOfInput is returned by Source.Read after the last row.
var ErrEndOfInput = errors.New("end of input")

// AckFunc tells a source that the result of the row it came with is
// durable: written to the Sink and flushed (or, for a row that Runner.Done
// holds, written by an earlier run: it is acknowledged as soon as it is
// read). The pool calls it at most once per row, and never for a row left
// without a result (interrupted, cut short by refused credentials): such a
// row stays unacknowledged, for a queue to deliver again or a resumed run
// to pick up. It may be called from any goroutine. An error it returns
// stops the run like a failed write. A nil AckFunc means the source needs
// no acknowledgement (a file).
type AckFunc func(ctx context.Context) error

// Source is an input of rows: a CSV file (CSVSource), or a queue.
//
// Read returns the next row and the AckFunc to call once its result is
// durable; ErrEndOfInput after the last row; or another error, which ends
// the run (a problem of one row is the row's Err, not an error of Read).
// Read may block until a row comes or ctx is done. The rows of one source
// must have distinct Lines: results, logs and resume name rows by them.
// Read is called from one goroutine at a time.
//
// Close releases the source; the pool does not call it (whoever opened
// the source closes it).
type Source interface {
	Read(ctx context.Context) (Row, AckFunc, error)
	Close() error
}

// Redeliverer is implemented by a Source that can deliver a row again
// later (a queue). When a row fails for a reason a later attempt may escape
// (a failed Result with Retryable set: retries exhausted, 5xx, the network),
// the pool calls Redeliver instead of writing the result. When it returns
// true the row is handed back: it gets no result and no acknowledgement
// from this run, and counts in Summary.Redelivered. It returns false for a
// row with no delivery left, whose failed result is then written and
// acknowledged like any other. It is called from the workers concurrently;
// an error stops the run like a failed acknowledgement.
type Redeliverer interface {
	Redeliver(ctx context.Context, row Row) (bool, error)
}

// Sink is where results go: Append writes one result, Flush makes every
// result appended so far durable. The pool calls them from one goroutine
// and acknowledges rows only after Flush returned nil. *ResultWriter is a
// Sink.
type Sink interface {
	Append(Result) error
	Flush() error
}

// CSVSource is the Source of a CSV input file, read through a Reader. Its
// rows need no acknowledgement (their AckFunc is nil): a file is read
// again by a resumed run. It is not safe for concurrent use.
type CSVSource struct {
	in io.ReadCloser
	rd *Reader
}

// OpenCSV opens the input with open and reads its header (see NewReader).
// The errors are "open input: ..." and "read input: ..." wrapping the
// cause (NewReader's errors match with errors.Is).
func OpenCSV(open func() (io.ReadCloser, error)) (*CSVSource, error) {
	in, err := open()
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	rd, err := NewReader(in)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("read input: %w", err)
	}
	return &CSVSource{in: in, rd: rd}, nil
}

// Read returns the next row, checked, with a nil AckFunc; ErrEndOfInput
// after the last; or the I/O error that ended reading, wrapped once as
// "read input: ...". ctx is not used: a file does not block.
func (s *CSVSource) Read(context.Context) (Row, AckFunc, error) {
	row, err := s.rd.Next()
	switch {
	case err == io.EOF:
		return Row{}, nil, ErrEndOfInput
	case err != nil:
		return Row{}, nil, fmt.Errorf("read input: %w", err)
	}
	return row, nil, nil
}

// Close closes the input file.
func (s *CSVSource) Close() error { return s.in.Close() }
