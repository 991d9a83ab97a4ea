package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// fakeClock is a settable clock for progress figures.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// attemptOf describes a request answered with status (0: no answer).
func attemptOf(kind string, status int, latency time.Duration) batch.Attempt {
	return batch.Attempt{Kind: kind, Status: status, RateLimited: status == http.StatusTooManyRequests, Latency: latency}
}

// drive feeds hooks the given results and request statuses.
func drive(h batch.Hooks, statuses []batch.Status, attempts []int) {
	for _, code := range attempts {
		h.Attempt(attemptOf("link", code, 20*time.Millisecond))
	}
	for i, st := range statuses {
		h.Result(batch.Result{Line: i + 2, Status: st})
	}
}

func TestProgressLogLine(t *testing.T) {
	paced, err := ratelimit.New(ratelimit.Config{Rate: 5, Burst: 2, Share: 1, MaxRetries: 1, MaxRateLimited: 1,
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxHold: time.Second}, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		pacer    *ratelimit.Pacer
		todo     int
		planWait time.Duration // from newProgress to Plan
		runFor   time.Duration // from Plan to the tick
		statuses []batch.Status
		attempts []int
		want     map[string]any
		noETA    bool
	}{
		{
			name: "dry run, nothing done yet", todo: 10, runFor: 5 * time.Second,
			want:  map[string]any{"rows_done": int64(0), "rows_total": int64(10), "rows_per_s": 0.0, "pace_rps": 0.0, "learned_limit_rps": 0.0, "learned_burst": int64(0), "rate_limited": int64(0), "failed": int64(0), "elapsed": 5 * time.Second},
			noETA: true,
		},
		{
			name: "linking with 429s and a failure", pacer: paced, todo: 8, planWait: 2 * time.Second, runFor: 10 * time.Second,
			statuses: []batch.Status{batch.StatusLinked, batch.StatusFailed, batch.StatusInvalid},
			attempts: []int{201, 429, 429, 201, 400, 0},
			want: map[string]any{"rows_done": int64(3), "rows_total": int64(8), "rows_per_s": 0.3, "pace_rps": 5.0,
				"rate_limited": int64(2), "failed": int64(1), "elapsed": 12 * time.Second, "eta": 17 * time.Second},
		},
		{
			name: "all done", todo: 4, runFor: 2 * time.Second,
			statuses: []batch.Status{batch.StatusLinked, batch.StatusLinked, batch.StatusSkipped, batch.StatusAlreadyLinked},
			want:     map[string]any{"rows_done": int64(4), "rows_total": int64(4), "rows_per_s": 2.0, "eta": time.Duration(0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			clock := newFakeClock()
			p := newProgress(progressOptions{Log: zap.New(core), Pacer: tt.pacer, Every: 30 * time.Second, Now: clock.Now})
			h := p.Hooks()
			p.tick() // before the plan: nothing to report
			clock.Advance(tt.planWait)
			h.Plan(tt.todo+3, tt.todo)
			clock.Advance(tt.runFor)
			drive(h, tt.statuses, tt.attempts)
			p.tick()

			entries := logs.FilterMessage("progress").All()
			if len(entries) != 1 {
				t.Fatalf("got %d progress lines, want 1: %v", len(entries), logs.All())
			}
			got := entries[0].ContextMap()
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s = %v (%T), want %v (%T)", k, got[k], got[k], want, want)
				}
			}
			if _, ok := got["eta"]; ok == tt.noETA {
				t.Errorf("eta present = %v, want %v", ok, !tt.noETA)
			}
			if entries[0].Level != zapcore.InfoLevel {
				t.Errorf("level = %v, want info", entries[0].Level)
			}
		})
	}
}

func TestProgressRateWindow(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clock := newFakeClock()
	p := newProgress(progressOptions{Log: zap.New(core), Now: clock.Now})
	h := p.Hooks()
	h.Plan(1000, 1000)
	// A fast first minute (10 rows/s), then a slow one (1 row/s): the rate
	// follows the last minute, not the whole run.
	for range 6 {
		clock.Advance(10 * time.Second)
		drive(h, slicesRepeat(batch.StatusInvalid, 100), nil)
		p.tick()
	}
	for range 6 {
		clock.Advance(10 * time.Second)
		drive(h, slicesRepeat(batch.StatusLinked, 10), nil)
		p.tick()
	}
	entries := logs.FilterMessage("progress").All()
	last := entries[len(entries)-1].ContextMap()
	if last["rows_per_s"] != 1.0 {
		t.Errorf("rows_per_s = %v, want 1 (the last minute)", last["rows_per_s"])
	}
	if last["eta"] != 340*time.Second {
		t.Errorf("eta = %v, want 5m40s (340 rows at 1/s)", last["eta"])
	}
}

func slicesRepeat(s batch.Status, n int) []batch.Status {
	out := make([]batch.Status, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestProgressETA(t *testing.T) {
	tests := []struct {
		name      string
		remaining int
		rate      float64
		want      time.Duration
		known     bool
	}{
		{"nothing left", 0, 0, 0, true},
		{"nothing left, overshoot", -2, 3, 0, true},
		{"no rate yet", 10, 0, 0, false},
		{"whole seconds", 100, 4, 25 * time.Second, true},
		{"rounded to the second", 5, 0.3, 17 * time.Second, true},
		{"long", 36000, 2.5, 4 * time.Hour, true},
		{"beyond maxETA", 1_000_000, 0.01, 0, false},
		{"NaN rate", 3, nanRate(), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, known := etaFor(tt.remaining, tt.rate)
			if got != tt.want || known != tt.known {
				t.Errorf("etaFor(%d, %v) = %v, %v; want %v, %v", tt.remaining, tt.rate, got, known, tt.want, tt.known)
			}
		})
	}
}

func nanRate() float64 {
	zero := 0.0
	return zero / zero
}

func TestProgressShortDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1499 * time.Millisecond, "1s"},
		{65 * time.Second, "1m05s"},
		{2*time.Hour + 7*time.Minute + 40*time.Second, "2h07m"},
	}
	for _, tt := range tests {
		if got := shortDuration(tt.d); got != tt.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestProgressTTY(t *testing.T) {
	paced, err := ratelimit.New(ratelimit.Config{Rate: 5, Share: 1, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxHold: time.Second}, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		pacer    *ratelimit.Pacer
		todo     int
		statuses []batch.Status
		attempts []int
		want     []string
		not      []string
	}{
		{
			name: "midway", todo: 8,
			statuses: []batch.Status{batch.StatusLinked, batch.StatusFailed, batch.StatusLinked},
			attempts: []int{201, 429, 201, 404},
			want:     []string{"3/8 rows", "0.3 rows/s", "elapsed 10s", "ETA 17s", "failed 1", "429s 1", "37%", "[=="},
			not:      []string{"pace"}, // a dry run has no pacer
		},
		{
			name: "paced", pacer: paced, todo: 5,
			statuses: []batch.Status{batch.StatusLinked},
			want:     []string{"1/5 rows", "pace 5/s", "learned ?"},
		},
		{
			name: "nothing to do", todo: 0,
			want: []string{"0/0 rows", "ETA 0s"},
		},
		{
			name: "complete", todo: 2,
			statuses: []batch.Status{batch.StatusLinked, batch.StatusLinked},
			want:     []string{"2/2 rows", "100%", "ETA 0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			clock := newFakeClock()
			p := newProgress(progressOptions{Out: &buf, TTY: true, Pacer: tt.pacer, Now: clock.Now})
			h := p.Hooks()
			p.tick()
			if buf.Len() != 0 {
				t.Fatalf("wrote %q before the plan", buf.String())
			}
			h.Plan(tt.todo, tt.todo)
			clock.Advance(10 * time.Second)
			drive(h, tt.statuses, tt.attempts)
			p.tick()
			out := buf.String()
			if !strings.HasPrefix(out, "\r") || strings.Contains(out, "\n") {
				t.Errorf("a live line starts with CR and has no newline: %q", out)
			}
			checkLine(t, out, tt.want, tt.not)
			p.Finish()
			p.Finish()
			p.tick()
			if out := buf.String(); strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("after Finish the output ends with one newline: %q", out)
			}
		})
	}
}

func TestProgressRunStops(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	p := newProgress(progressOptions{Log: zap.New(core), Every: time.Hour})
	p.Hooks().Plan(1, 1)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	cancel()
	wg.Wait()
	p.Finish()
	if n := logs.Len(); n != 0 {
		t.Errorf("wrote %d lines in less than Every", n)
	}
}

func TestProgressStatusWriter(t *testing.T) {
	tests := []struct {
		name  string
		steps func(sw *statusWriter)
		want  string
	}{
		{
			name: "pass-through without a status",
			steps: func(sw *statusWriter) {
				_, _ = sw.Write([]byte("{\"msg\":\"start\"}\n"))
			},
			want: "{\"msg\":\"start\"}\n",
		},
		{
			name: "a log line goes above the bar",
			steps: func(sw *statusWriter) {
				sw.SetStatus("bar 1")
				_, _ = sw.Write([]byte("log 1\n"))
				sw.SetStatus("bar 2")
			},
			want: "\rbar 1\x1b[K" + "\r\x1b[2Klog 1\nbar 1\x1b[K" + "\r\x1b[2Kbar 2\x1b[K",
		},
		{
			name: "a partial line waits for its end",
			steps: func(sw *statusWriter) {
				sw.SetStatus("bar")
				_, _ = sw.Write([]byte("half"))
				sw.SetStatus("bar 2")
				_, _ = sw.Write([]byte(" line\n"))
			},
			want: "\rbar\x1b[K" + "\r\x1b[2Khalf" + " line\n" + "\rbar 2\x1b[K",
		},
		{
			name: "end keeps the last line",
			steps: func(sw *statusWriter) {
				sw.SetStatus("bar")
				sw.EndStatus("final")
				sw.SetStatus("ignored")
				_, _ = sw.Write([]byte("summary\n"))
			},
			want: "\rbar\x1b[K" + "\r\x1b[2Kfinal\x1b[K\n" + "summary\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			sw := newStatusWriter(&buf)
			tt.steps(sw)
			if got := buf.String(); got != tt.want {
				t.Errorf("wrote\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestProgressStatusWriterLogger(t *testing.T) {
	// Through zap, as runCommand uses it: every log line ends up whole,
	// on a line of its own.
	var buf bytes.Buffer
	sw := newStatusWriter(&buf)
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(sw), zapcore.InfoLevel))
	clock := newFakeClock()
	p := newProgress(progressOptions{Out: sw, TTY: true, Log: log, Now: clock.Now})
	h := p.Hooks()
	h.Plan(3, 3)
	p.tick()
	log.Info("row", zap.Int("line", 2))
	h.Result(batch.Result{Status: batch.StatusLinked})
	p.tick()
	p.Finish()
	log.Info("summary")
	var lines []string
	for l := range strings.SplitSeq(buf.String(), "\n") {
		// What a terminal shows of the line: the text after the last CR.
		if i := strings.LastIndex(l, "\r"); i >= 0 {
			l = l[i+1:]
		}
		lines = append(lines, strings.ReplaceAll(strings.ReplaceAll(l, "\x1b[2K", ""), "\x1b[K", ""))
	}
	if len(lines) != 4 || !strings.Contains(lines[0], `"msg":"row"`) || !strings.Contains(lines[1], "1/3 rows") ||
		!strings.Contains(lines[2], `"msg":"summary"`) || lines[3] != "" {
		t.Errorf("terminal shows %q", lines)
	}
}

func TestProgressFitWidth(t *testing.T) {
	tests := []struct {
		line  string
		width int
		want  string
	}{
		{"abcdef", 0, "abcdef"},
		{"abcdef", 7, "abcdef"},
		{"abcdef", 6, "abcde"},
		{"abcdef", 3, "ab"},
	}
	for _, tt := range tests {
		if got := fitWidth(tt.line, tt.width); got != tt.want {
			t.Errorf("fitWidth(%q, %d) = %q, want %q", tt.line, tt.width, got, tt.want)
		}
	}
}

func TestProgressIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	f, err := openDevNull(t)
	if err != nil {
		t.Skip(err)
	}
	if isTerminal(f) {
		t.Error("/dev/null is not a terminal")
	}
}

func TestSummaryTable(t *testing.T) {
	tests := []struct {
		name  string
		sum   batch.Summary
		extra summaryExtra
		want  map[string]string
		not   []string
	}{
		{
			name: "a run with 429s and a learned limit",
			sum: batch.Summary{
				Rows:     12,
				Counts:   map[batch.Status]int{batch.StatusLinked: 9, batch.StatusFailed: 2, batch.StatusSkipped: 1},
				Warnings: map[string]int{batch.WarnEmailMismatch: 1, batch.WarnEmailUnverified: 0},
				Requests: 250, RateLimited: 12, Retries: 15, Elapsed: 25 * time.Second,
			},
			extra: summaryExtra{Results: "out/results.csv", Pace: paceFigures{Rate: 10, Learned: 10, Burst: 50, Known: true}},
			want: map[string]string{
				"linked": "9", "already_linked": "0", "planned": "0", "invalid": "0", "skipped": "1", "failed": "2",
				"warning email_mismatch": "1",
				"requests":               "250", "429s": "12", "retries": "15", "elapsed": "25s",
				"effective rate": "10/s", "learned limit": "10/s burst 50", "results": "out/results.csv",
			},
			not: []string{"remaining", "kept", "email_unverified"},
		},
		{
			name: "an interrupted, resumed dry run",
			sum: batch.Summary{
				Counts: map[batch.Status]int{batch.StatusPlanned: 3}, Kept: 4, Remaining: 5, Elapsed: 1500 * time.Millisecond,
			},
			extra: summaryExtra{Results: "-"},
			want: map[string]string{
				"planned": "3", "kept from earlier run": "4", "remaining": "5", "requests": "0",
				"elapsed": "2s", "effective rate": "0/s", "learned limit": "not learned", "results": "-",
			},
		},
	}
	row := regexp.MustCompile(`^(\S+(?: \S+)*) {2,}(\S.*)$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeSummaryTable(&buf, tt.sum, tt.extra)
			out := buf.String()
			got := map[string]string{}
			ends := map[int]bool{}
			for l := range strings.Lines(out) {
				l = strings.TrimSuffix(l, "\n")
				m := row.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("line %q is not NAME  VALUE:\n%s", l, out)
				}
				got[m[1]] = m[2]
				if m[1] != "results" {
					ends[len(l)] = true // figures are right-aligned
				}
			}
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("%s = %q, want %q\n%s", k, got[k], w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("table has %q:\n%s", n, out)
				}
			}
			if len(ends) != 1 {
				t.Errorf("figures are not aligned:\n%s", out)
			}
		})
	}
}

func TestSummaryFields(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	sum := batch.Summary{Requests: 100, Elapsed: 40 * time.Second}
	extra := summaryExtra{Pace: paceFigures{Rate: 3, Learned: 3.333, Burst: 10, Known: true}}
	zap.New(core).Info("summary", extra.zapFields(sum)...)
	got := logs.All()[0].ContextMap()
	want := map[string]any{"effective_rps": 2.5, "pace_rps": 3.0, "learned_limit_rps": 3.33, "learned_burst": int64(10)}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
}

func openDevNull(t *testing.T) (*os.File, error) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = f.Close() })
	return f, nil
}

func TestSummaryExtra(t *testing.T) {
	paced, err := ratelimit.New(ratelimit.Config{Rate: 4, Share: 1, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxHold: time.Second}, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		pacer *ratelimit.Pacer
		want  summaryExtra
	}{
		{"dry run", nil, summaryExtra{Results: "r.csv"}},
		{"configured rate, nothing learned", paced, summaryExtra{Results: "r.csv", Pace: paceFigures{Rate: 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newSummaryExtra("r.csv", tt.pacer); got != tt.want {
				t.Errorf("newSummaryExtra = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestProgressOpen: a run without a total (a queue) draws its terminal
// line from the start, with the rows done and the note but no bar,
// percentage or ETA; without a terminal it writes nothing.
func TestProgressOpen(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		want []string
		not  []string
	}{
		{name: "terminal", tty: true, want: []string{"2 rows", "failed 1", "backlog 7", "rows/s", "elapsed 10s"}, not: []string{"%", "ETA", "]", "/0"}},
		{name: "no terminal", tty: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			core, logs := observer.New(zapcore.InfoLevel)
			clock := newFakeClock()
			p := newProgress(progressOptions{Out: &buf, TTY: tt.tty, Every: time.Second, Log: zap.New(core), Now: clock.Now,
				Open: true, Note: func() string { return "backlog 7" }})
			clock.Advance(10 * time.Second)
			drive(p.Hooks(), []batch.Status{batch.StatusLinked, batch.StatusFailed}, nil)
			p.tick()
			p.Finish()
			out := buf.String()
			if !tt.tty {
				if out != "" || logs.Len() != 0 {
					t.Errorf("wrote %q and %d log lines without a terminal", out, logs.Len())
				}
				return
			}
			if !strings.HasSuffix(out, "\n") {
				t.Errorf("the final line does not end with a newline: %q", out)
			}
			checkLine(t, out, tt.want, tt.not)
		})
	}
}

// checkLine fails t for each of want that line lacks and each of not it
// has.
func checkLine(t *testing.T, line string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("line %q lacks %q", line, w)
		}
	}
	for _, n := range not {
		if strings.Contains(line, n) {
			t.Errorf("line %q has %q", line, n)
		}
	}
}
