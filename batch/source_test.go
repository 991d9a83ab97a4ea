package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
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

// TestRunSourceMessages: a queue's rows carry their message id to the
// results file's message_id column; a row whose result an earlier run made
// durable (Row.Kept) is acknowledged without a second result; a row that
// fails for a transient reason with Redeliver set is handed back, neither
// written nor acknowledged, while the same failure on a last delivery
// (Redeliver nil) is written.
func TestRunSourceMessages(t *testing.T) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	srv.Seed("auth0|p1", "github|s1")
	srv.Seed("auth0|p2", "github|s2")
	rows := []Row{
		{Line: 1, Primary: "auth0|p1", Secondary: "github|s1", MessageID: "1-0"},
		{Line: 2, Primary: "auth0|p2", Secondary: "github|s2", MessageID: "2-0", Kept: true},
		{Line: 3, Primary: "auth0|p3", Secondary: "github|s3", MessageID: "3-0"},
	}
	var buf bytes.Buffer
	w, err := NewMessageResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	src := &againSource{sliceSource: &sliceSource{rows: rows, sink: &flushSink{w: w, done: map[int]bool{}}, acks: map[int]int{}}, left: true}
	cfg := DefaultConfig()
	cfg.Workers = 2
	r := newTestRunner(t, srv, cfg)
	r.Pacer = nil
	pc := ratelimit.DefaultConfig()
	pc.Rate, pc.Burst, pc.MaxRetries, pc.MinBackoff, pc.MaxBackoff = 1000, 100, 1, time.Millisecond, time.Millisecond
	if r.Pacer, err = ratelimit.New(pc, linker.Retryable); err != nil {
		t.Fatal(err)
	}
	// Every request to p3 fails with a 5xx: the row is retryable.
	r.Client = failingClient(t, srv, "auth0|p3")

	sum, err := r.RunSource(t.Context(), src, src.sink)
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := map[string]Result{}
	n := 0
	if err := ReadResults(&buf, func(res Result) error { got[res.MessageID] = res; n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 || got["1-0"].Status != StatusLinked || got["1-0"].Line != 1 {
		t.Errorf("results %v, want one: 1-0 linked", got)
	}
	if want := map[int]int{1: 1, 2: 1}; fmt.Sprint(src.acks) != fmt.Sprint(want) {
		t.Errorf("acknowledgements %v, want %v", src.acks, want)
	}
	if src.again[3] != 1 {
		t.Errorf("line 3 handed back %d times, want 1", src.again[3])
	}
	if sum.Rows != 3 || sum.Kept != 1 || sum.Redelivered != 1 || sum.Remaining != 0 {
		t.Errorf("summary rows %d kept %d redelivered %d remaining %d, want 3 1 1 0", sum.Rows, sum.Kept, sum.Redelivered, sum.Remaining)
	}

	// The last delivery: Redeliver says no, the failure is written.
	buf.Reset()
	if w, err = NewMessageResultWriter(&buf, true); err != nil {
		t.Fatal(err)
	}
	src = &againSource{sliceSource: &sliceSource{rows: rows[2:], sink: &flushSink{w: w, done: map[int]bool{}}, acks: map[int]int{}}}
	if _, err := r.RunSource(t.Context(), src, src.sink); err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	if !strings.Contains(buf.String(), ",3-0\n") || !strings.Contains(buf.String(), ",failed,") || src.acks[3] != 1 {
		t.Errorf("last delivery: results %q, acks %v; want line 3 failed, acknowledged", buf.String(), src.acks)
	}
}

// failingClient is a client of srv whose requests for the user id fail
// with 503, through a transport that answers them itself.
func failingClient(t *testing.T, srv *linkertest.Server, id string) *linker.Client {
	t.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: failFor{next: srv.Client().Transport, path: url.PathEscape(id)}}
	c, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type failFor struct {
	next http.RoundTripper
	path string
}

func (f failFor) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.EscapedPath(), f.path) {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
	}
	return f.next.RoundTrip(req)
}

// againSource is a sliceSource that delivers rows again (a Redeliverer)
// while left is set.
type againSource struct {
	*sliceSource
	left  bool
	again map[int]int // line -> times handed back
}

func (s *againSource) Redeliver(_ context.Context, row Row) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.left {
		return false, nil
	}
	if s.again == nil {
		s.again = map[int]int{}
	}
	s.again[row.Line]++
	return true, nil
}
