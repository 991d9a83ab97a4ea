package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Batches of NDJSON lines handed to the parsing workers of Scan.
const (
	batchLines = 512
	batchBytes = 512 << 10
)

// lineBatch is a run of consecutive NDJSON lines and, once done is closed,
// what they parsed to.
type lineBatch struct {
	first   int // line number of the first line
	buf     []byte
	ends    []int // end offset in buf of each line
	results []lineResult
	done    chan struct{}
}

type lineResult struct {
	user  User
	err   *LineError
	blank bool
}

// Scan reads the whole export r, calling user for each user in the order of
// the export and bad for each line that cannot be read as a user; it
// returns the number of users. It stops early, with ctx's error, when ctx
// is done.
//
// An NDJSON export is parsed by workers goroutines at once (values below 2
// mean none: the calling goroutine parses); user and bad are always called
// from the calling goroutine, one at a time. Every goroutine Scan starts has
// ended when it returns. Errors are those of [NewReader] and the errors
// that end reading in [Reader.Next].
func Scan(ctx context.Context, r io.Reader, workers int, user func(User), bad func(*LineError)) (int, error) {
	rd, err := NewReader(r)
	if err != nil {
		return 0, err
	}
	if rd.format != NDJSON || workers < 2 {
		return scanSerial(ctx, rd, user, bad)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := make(chan *lineBatch)
	order := make(chan *lineBatch, 2*workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stops the producer on an early return

	var readErr error // set by the producer before it closes order
	wg.Go(func() {
		defer close(order)
		defer close(jobs)
		readErr = produce(ctx, rd, jobs, order)
	})
	for range workers {
		wg.Go(func() {
			for b := range jobs {
				parseBatch(b)
			}
		})
	}

	n := 0
	for b := range order {
		select {
		case <-b.done:
		case <-ctx.Done():
			return n, fmt.Errorf("read export: %w", ctx.Err())
		}
		for i := range b.results {
			res := &b.results[i]
			switch {
			case res.blank:
			case res.err != nil:
				bad(res.err)
			default:
				n++
				user(res.user)
			}
		}
		if ctx.Err() != nil {
			return n, fmt.Errorf("read export: %w", ctx.Err())
		}
	}
	if readErr != nil {
		return n, readErr
	}
	if err := ctx.Err(); err != nil {
		return n, fmt.Errorf("read export: %w", err)
	}
	return n, nil
}

// produce cuts the lines of rd into batches and sends each to order (to be
// consumed in turn) and to jobs (to be parsed). It returns the error that
// ended reading, if any.
func produce(ctx context.Context, rd *Reader, jobs, order chan<- *lineBatch) error {
	newBatch := func() *lineBatch {
		buf, _ := bufPool.Get().(*[]byte)
		if buf == nil {
			b := make([]byte, 0, batchBytes)
			buf = &b
		}
		return &lineBatch{first: rd.line + 1, buf: (*buf)[:0], ends: make([]int, 0, batchLines), done: make(chan struct{})}
	}
	send := func(b *lineBatch) bool {
		select {
		case order <- b:
		case <-ctx.Done():
			return false
		}
		select {
		case jobs <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	b := newBatch()
	for rd.sc.Scan() {
		rd.line++
		b.buf = append(b.buf, rd.sc.Bytes()...)
		b.ends = append(b.ends, len(b.buf))
		if len(b.ends) == batchLines || len(b.buf) >= batchBytes {
			if !send(b) {
				return nil
			}
			b = newBatch()
		}
	}
	if len(b.ends) > 0 && !send(b) {
		return nil
	}
	if err := rd.sc.Err(); err != nil {
		return fmt.Errorf("read export after line %d: %w", rd.line, err)
	}
	return nil
}

// parseBatch parses the lines of b and closes b.done.
func parseBatch(b *lineBatch) {
	defer close(b.done)
	b.results = make([]lineResult, len(b.ends))
	start := 0
	for i, end := range b.ends {
		line := b.buf[start:end]
		start = end
		res := &b.results[i]
		if len(bytes.TrimSpace(line)) == 0 {
			res.blank = true
			continue
		}
		u, err := ParseLine(line)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				le = &LineError{Msg: err.Error()}
			}
			le.Line = b.first + i
			res.err = le
			continue
		}
		u.Line = b.first + i
		res.user = u
	}
	// The users hold copies of what they need: the buffer can serve
	// another batch.
	buf := b.buf[:0]
	b.buf = nil
	bufPool.Put(&buf)
}

// bufPool holds the line buffers of batches already parsed.
var bufPool sync.Pool

// scanSerial is Scan in the calling goroutine alone.
func scanSerial(ctx context.Context, rd *Reader, user func(User), bad func(*LineError)) (int, error) {
	n := 0
	for {
		u, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if le, ok := errors.AsType[*LineError](err); ok {
			bad(le)
			continue
		}
		if err != nil {
			return n, err
		}
		n++
		user(u)
		if n%4096 == 0 && ctx.Err() != nil {
			return n, fmt.Errorf("read export: %w", ctx.Err())
		}
	}
}
