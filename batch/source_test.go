package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// sliceSource is a second Source for the pool: rows from a slice, each with
// an AckFunc that records its line and checks, through sink, that the row's
// result was flushed before it.
type sliceSource struct {
	rows []Row
	sink *flushSink
	fail error // returned by every AckFunc, when set

	mu     sync.Mutex
	next   int
	acks   map[int]int // line -> acks
	early  []int       // lines acknowledged before their result was flushed
	closed bool
}

func (s *sliceSource) Read(ctx context.Context) (Row, AckFunc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Row{}, nil, err
	}
	if s.next == len(s.rows) {
		return Row{}, nil, ErrEndOfInput
	}
	row := s.rows[s.next]
	s.next++
	return row, func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.acks[row.Line]++
		if !s.sink.flushed(row.Line) {
			s.early = append(s.early, row.Line)
		}
		return s.fail
	}, nil
}

func (s *sliceSource) Close() error { s.closed = true; return nil }

// flushSink is a Sink that writes to a ResultWriter and remembers which
// lines it has flushed.
type flushSink struct {
	w *ResultWriter

	mu      sync.Mutex
	pending []int
	done    map[int]bool
}

func (f *flushSink) Append(res Result) error {
	f.mu.Lock()
	f.pending = append(f.pending, res.Line)
	f.mu.Unlock()
	return f.w.Append(res)
}

func (f *flushSink) Flush() error {
	if err := f.w.Flush(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, line := range f.pending {
		f.done[line] = true
	}
	f.pending = f.pending[:0]
	return nil
}

func (f *flushSink) flushed(line int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done[line]
}

func newSliceSource(t *testing.T, rows []Row) (*sliceSource, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	sink := &flushSink{w: w, done: map[int]bool{}}
	return &sliceSource{rows: rows, sink: sink, acks: map[int]int{}}, &buf
}

// TestRunSourceSlice runs rows from a slice, not a file, through the same
// pool against the fake tenant over HTTP: every row gets one result and one
// acknowledgement, after its result was flushed.
func TestRunSourceSlice(t *testing.T) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	var rows []Row
	for i := range 40 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		rows = append(rows, Row{Line: 100 + i, Primary: p, Secondary: s})
	}
	rows = append(rows,
		Row{Line: 200, Primary: "auth0|x", Secondary: "auth0|x"},       // invalid: checked by the pool
		Row{Line: 201, Err: errors.New("parse error on line 201")},     // unreadable
		Row{Line: 202, Primary: "auth0|nobody", Secondary: "github|s"}, // refused by the tenant
	)
	src, buf := newSliceSource(t, rows)
	cfg := DefaultConfig()
	cfg.Workers = 4
	r := newTestRunner(t, srv, cfg)

	sum, err := r.RunSource(t.Context(), src, src.sink)
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := map[int][]Result{}
	if err := ReadResults(buf, func(res Result) error { got[res.Line] = append(got[res.Line], res); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if n := len(got[row.Line]); n != 1 {
			t.Errorf("line %d: %d results, want 1", row.Line, n)
		}
		if n := src.acks[row.Line]; n != 1 {
			t.Errorf("line %d: %d acknowledgements, want 1", row.Line, n)
		}
	}
	if len(got) != len(rows) {
		t.Errorf("%d lines have results, want %d", len(got), len(rows))
	}
	if len(src.early) > 0 {
		t.Errorf("lines %v acknowledged before their result was flushed", src.early)
	}
	for i := range 40 {
		if res := got[100+i]; len(res) == 1 && res[0].Status != StatusLinked {
			t.Errorf("line %d: %s (%s), want linked", 100+i, res[0].Status, res[0].Error)
		}
	}
	want := map[int]Status{200: StatusInvalid, 201: StatusInvalid, 202: StatusFailed}
	for line, st := range want {
		if res := got[line]; len(res) != 1 || res[0].Status != st {
			t.Errorf("line %d: %v, want %s", line, res, st)
		}
	}
	if sum.Rows != len(rows) || sum.Remaining != 0 || sum.Counts[StatusLinked] != 40 {
		t.Errorf("summary %+v, want %d rows, all with a result, 40 linked", sum, len(rows))
	}
	if src.closed {
		t.Error("RunSource closed the source; its opener owns it")
	}
}

// TestRunSourceAckFails: an acknowledgement that fails stops the run with
// its error, naming the line.
func TestRunSourceAckFails(t *testing.T) {
	src, _ := newSliceSource(t, []Row{{Line: 7, Primary: "auth0|x", Secondary: "auth0|x"}})
	src.fail = errors.New("queue gone")
	cfg := DefaultConfig()
	cfg.DryRun = true
	_, err := (&Runner{Config: cfg}).RunSource(t.Context(), src, src.sink)
	if err == nil || !strings.Contains(err.Error(), "acknowledge line 7: queue gone") {
		t.Errorf("RunSource() = %v, want the acknowledgement's error", err)
	}
}

// failingReader yields its content, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestRunInputErrorWrappedOnce: an input that fails to read names it once.
func TestRunInputErrorWrappedOnce(t *testing.T) {
	diskGone := errors.New("disk gone")
	open := func() (io.ReadCloser, error) {
		return io.NopCloser(&failingReader{r: strings.NewReader("primary_user_id,secondary_user_id\nauth0|1,github|1\n"), err: diskGone}), nil
	}
	cfg := DefaultConfig()
	cfg.DryRun = true
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, plan := range []bool{false, true} {
		r := &Runner{Config: cfg}
		if plan { // the plan read elsewhere: the run's own read fails
			if r.Plan, err = BuildPlan(strings.NewReader("primary_user_id,secondary_user_id\nauth0|1,github|1\n")); err != nil {
				t.Fatal(err)
			}
		}
		_, err := r.Run(t.Context(), open, w)
		if !errors.Is(err, diskGone) || err.Error() != "read input: disk gone" {
			t.Errorf("plan given %v: Run() = %q, want \"read input: disk gone\"", plan, err)
		}
	}
}

// cancelSource hands out its rows, then cancels the run on the next Read
// and returns the context's error, as a queue's Read would.
type cancelSource struct {
	*sliceSource
	cancel context.CancelFunc
}

func (s *cancelSource) Read(ctx context.Context) (Row, AckFunc, error) {
	s.mu.Lock()
	end := s.next == len(s.rows)
	s.mu.Unlock()
	if end {
		s.cancel()
		<-ctx.Done()
		return Row{}, nil, ctx.Err()
	}
	return s.sliceSource.Read(ctx)
}

// TestRunSourceAcks: a row already done is acknowledged without a new
// result; a run interrupted while waiting for a row ends as interrupted,
// with every row read written and acknowledged, and nothing else.
func TestRunSourceAcks(t *testing.T) {
	rows := []Row{
		{Line: 1, Primary: "auth0|1", Secondary: "github|1"},
		{Line: 2, Primary: "auth0|2", Secondary: "github|2"},
		{Line: 3, Primary: "auth0|3", Secondary: "github|3"},
	}
	inner, buf := newSliceSource(t, rows)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := &cancelSource{sliceSource: inner, cancel: cancel}
	cfg := DefaultConfig()
	cfg.DryRun = true
	r := &Runner{Config: cfg, Done: &LineSet{}}
	r.Done.Add(2)

	sum, err := r.RunSource(ctx, src, inner.sink)
	if !errors.Is(err, ErrInterrupted) {
		t.Errorf("RunSource() = %v, want ErrInterrupted", err)
	}
	got := map[int]Status{}
	if err := ReadResults(buf, func(res Result) error { got[res.Line] = res.Status; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := map[int]Status{1: StatusPlanned, 3: StatusPlanned}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v (line 2 is done already)", got, want)
	}
	if want := map[int]int{1: 1, 2: 1, 3: 1}; fmt.Sprint(inner.acks) != fmt.Sprint(want) {
		t.Errorf("acknowledgements %v, want %v", inner.acks, want)
	}
	if sum.Rows != 3 || sum.Kept != 1 || sum.Remaining != 0 {
		t.Errorf("summary rows %d kept %d remaining %d, want 3, 1, 0", sum.Rows, sum.Kept, sum.Remaining)
	}
}
