package queue

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/linkbatch/linkbatch/batch"
)

// FileSink is a batch.Sink that appends results, with their message_id
// column, to a CSV file and syncs it on every Flush, so that a message is
// acknowledged only once its result is on disk. The file grows across runs:
// ReadDone reads back the messages it holds. It is safe for concurrent use.
type FileSink struct {
	f *os.File
	w *batch.ResultWriter
}

// OpenFileSink opens path for appending, creating it with a header when it
// is missing or empty. A last line cut short (a run killed while writing
// it, before the sync that precedes any acknowledgement: its message is
// delivered again) is cut off first, so that the next row starts on a line
// of its own and no truncated message id is read back. Errors are "open
// results: ...".
func OpenFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	if err := cutPartialLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open results: %w", err)
	}
	if err := checkHeader(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open results: %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open results: %w", err)
	}
	w, err := batch.NewMessageResultWriter(f, st.Size() == 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open results: %w", err)
	}
	return &FileSink{f: f, w: w}, nil
}

// cutPartialLine truncates f after its last newline when it does not end
// with one. The results writer quotes no newline into a field of its own
// (ids, statuses and messages have none) except inside quotes, which a
// partial line may hold: the cut is at the last newline whatever it is, so
// at worst a whole row that ended inside quotes goes too, and its message,
// never acknowledged, is delivered again.
func cutPartialLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	end := st.Size()
	for pos := end; pos > 0; {
		n := int64(chunk)
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				if pos+i+1 == end {
					return nil // whole lines only
				}
				return f.Truncate(pos + i + 1)
			}
		}
	}
	return f.Truncate(0) // not even a whole header
}

// checkHeader refuses a results file that is not empty and whose header
// has no message_id column: the results of a CSV run, which a queue run
// must not append to.
func checkHeader(f *os.File) error {
	cr := csv.NewReader(io.NewSectionReader(f, 0, 1<<20))
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if !slices.Contains(header, batch.ColMessageID) {
		return errors.New("its header has no message_id column: it holds the results of a CSV input; give a queue run a results file of its own")
	}
	return nil
}

// File returns the open file (to lock it).
func (s *FileSink) File() *os.File { return s.f }

// Append implements batch.Sink.
func (s *FileSink) Append(res batch.Result) error { return s.w.Append(res) }

// Flush implements batch.Sink: it writes out the results and syncs the file.
func (s *FileSink) Flush() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// Close flushes and closes the file.
func (s *FileSink) Close() error {
	return errors.Join(s.Flush(), s.f.Close())
}

// ReadDone returns the ids of the messages whose result the results file at
// path holds, but for the planned rows of a dry run (every other result a
// queue run writes is final); a missing file holds none. Errors are ReadResults's, naming the file.
func ReadDone(path string) (map[string]bool, error) {
	done := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	defer f.Close()
	err = batch.ReadResults(f, func(r batch.Result) error {
		if r.MessageID != "" && r.Status != batch.StatusPlanned {
			done[r.MessageID] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return done, nil
}
