package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/ratelimit"
)

const (
	// ttyRefresh is how often the progress line on a terminal is redrawn.
	ttyRefresh = 200 * time.Millisecond
	// rateWindow is the span over which rows per second (and so the ETA)
	// are measured: recent enough to follow a change of pace, long enough
	// to smooth out 429 hold-offs.
	rateWindow = time.Minute
	// maxETA is the longest ETA reported; a longer one is shown as unknown.
	maxETA = 99 * 24 * time.Hour
	// barWidth is the width of the bar itself, in cells.
	barWidth = 20
)

// progressOptions configures a progress display; see newProgress.
type progressOptions struct {
	// Out receives the progress line on a terminal. When it is the
	// *statusWriter the logger writes through, log lines and the progress
	// line never mix.
	Out io.Writer
	// TTY selects a live progress line on Out; otherwise a "progress" log
	// line is written to Log every Every (never, when Every <= 0).
	TTY   bool
	Every time.Duration
	Log   *zap.Logger
	// Pacer supplies the pace and the learned limit; nil (a dry run)
	// reports zeros.
	Pacer *ratelimit.Pacer
	// Now is the clock of the figures; nil means time.Now.
	Now func() time.Time
	// Open is a run without a total (a queue): its terminal line shows
	// the rows done from the start, with no bar, percentage or ETA, and
	// Note's text when set (the queue's backlog). Without a terminal it
	// writes nothing: the queue logs its own progress lines.
	Open bool
	Note func() string
}

// progress follows a run through its batch.Hooks and reports rows done of
// the total, rows per second, the pace and the tenant's learned limit, 429s,
// failed rows, elapsed time and an ETA: as one live line on a terminal, or as
// a structured log line every Every otherwise. Its methods are safe for
// concurrent use.
type progress struct {
	opts   progressOptions
	now    func() time.Time
	start  time.Time
	status *statusWriter

	// done and failed count the results written, and those failed,
	// without the mutex: the Result hook runs once per row.
	done, failed atomic.Int64

	mu          sync.Mutex
	planned     bool
	total       int // rows this run processes (Hooks.Plan's todo)
	rateLimited int
	samples     []rowSample // recent (time, done) pairs, oldest first
	finished    bool
}

// rowSample is the number of rows done at one instant.
type rowSample struct {
	at   time.Time
	done int
}

// newProgress returns a progress display for opts; elapsed time counts from
// this call. It writes nothing until the run's plan is known (Hooks.Plan).
func newProgress(opts progressOptions) *progress {
	p := &progress{opts: opts, now: opts.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.opts.Log == nil {
		p.opts.Log = zap.NewNop()
	}
	if p.opts.Out == nil {
		p.opts.Out = io.Discard
	}
	if sw, ok := p.opts.Out.(*statusWriter); ok {
		p.status = sw
	} else {
		p.status = newStatusWriter(p.opts.Out)
	}
	p.start = p.now()
	return p
}

// Hooks returns the callbacks that feed p; they only count, under a mutex
// or atomically, and never block on output.
func (p *progress) Hooks() batch.Hooks {
	return batch.Hooks{
		Plan: func(_, todo int) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.planned, p.total = true, todo
			p.samples = append(p.samples[:0], rowSample{at: p.now(), done: int(p.done.Load())})
		},
		Attempt: func(a batch.Attempt) {
			if !a.RateLimited {
				return
			}
			p.mu.Lock()
			p.rateLimited++
			p.mu.Unlock()
		},
		Result: func(res batch.Result) {
			p.done.Add(1)
			if res.Status == batch.StatusFailed {
				p.failed.Add(1)
			}
		},
	}
}

// Run reports progress until ctx is done: it redraws the terminal line
// every ttyRefresh, or logs a line every Every. Its caller owns the
// goroutine that runs it, cancels ctx to stop it and then calls Finish.
func (p *progress) Run(ctx context.Context) {
	every := p.opts.Every
	if p.opts.TTY {
		every = ttyRefresh
	}
	if every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.tick()
		}
	}
}

// Finish draws the final progress line on a terminal and ends it with a
// newline, so that what follows starts on a line of its own; later log
// lines pass through unchanged. It writes nothing when not on a terminal
// (the summary line follows). Calls after the first do nothing.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	if !p.opts.TTY {
		return
	}
	if !p.planned && !p.opts.Open {
		p.status.EndStatus("")
		return
	}
	p.status.EndStatus(p.lineLocked(p.snapshotLocked(p.now())))
}

// tick reports progress once. The output is written after p's lock is
// released, so that a slow terminal or log never holds up the hooks.
func (p *progress) tick() {
	p.mu.Lock()
	if p.finished || !(p.planned || p.opts.Open && p.opts.TTY) {
		p.mu.Unlock()
		return
	}
	s := p.snapshotLocked(p.now())
	var line string
	if p.opts.TTY {
		line = p.lineLocked(s)
	}
	p.mu.Unlock()
	if p.opts.TTY {
		p.status.SetStatus(line) // a no-op once Finish has ended the status
		return
	}
	p.opts.Log.Info("progress", s.fields()...)
}

// progressSnapshot holds the figures of one report.
type progressSnapshot struct {
	Done, Total int
	RowsPerSec  float64
	Pace        paceFigures
	RateLimited int
	Failed      int
	Elapsed     time.Duration
	ETA         time.Duration
	ETAKnown    bool
}

// fields returns the figures as the fields of a "progress" log line. The
// eta field is left out while it is unknown (nothing done yet).
func (s progressSnapshot) fields() []zap.Field {
	fs := []zap.Field{
		zap.Int("rows_done", s.Done),
		zap.Int("rows_total", s.Total),
		zap.Float64("rows_per_s", round2(s.RowsPerSec)),
		zap.Float64("pace_rps", round2(s.Pace.Rate)),
		zap.Float64("learned_limit_rps", round2(s.Pace.Learned)),
		zap.Int("learned_burst", s.Pace.Burst),
		zap.Int("rate_limited", s.RateLimited),
		zap.Int("failed", s.Failed),
		zap.Duration("elapsed", s.Elapsed),
	}
	if s.ETAKnown {
		fs = append(fs, zap.Duration("eta", s.ETA))
	}
	return fs
}

// snapshotLocked takes the figures at now and records a rate sample.
func (p *progress) snapshotLocked(now time.Time) progressSnapshot {
	done := int(p.done.Load())
	p.samples = append(p.samples, rowSample{at: now, done: done})
	p.samples = trimSamples(p.samples, now.Add(-rateWindow))
	rate := rowsPerSec(p.samples)
	eta, known := etaFor(p.total-done, rate)
	return progressSnapshot{
		Done:        done,
		Total:       p.total,
		RowsPerSec:  rate,
		Pace:        readPace(p.opts.Pacer),
		RateLimited: p.rateLimited,
		Failed:      int(p.failed.Load()),
		Elapsed:     now.Sub(p.start),
		ETA:         eta,
		ETAKnown:    known,
	}
}

// trimSamples drops the samples that are not needed to span from since to
// the newest: it keeps the newest sample taken at or before since.
func trimSamples(s []rowSample, since time.Time) []rowSample {
	k := 0
	for k+1 < len(s) && !s[k+1].at.After(since) {
		k++
	}
	return slices.Delete(s, 0, k)
}

// rowsPerSec returns the rows done per second between the oldest and the
// newest sample, or 0 when they are not apart in time.
func rowsPerSec(s []rowSample) float64 {
	if len(s) < 2 {
		return 0
	}
	first, last := s[0], s[len(s)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.done-first.done) / dt
}

// etaFor returns how long remaining rows take at rate rows per second,
// rounded to the second, and whether that is known: it is not while the rate
// is 0, nor when it would exceed maxETA.
func etaFor(remaining int, rate float64) (time.Duration, bool) {
	if remaining <= 0 {
		return 0, true
	}
	if !(rate > 0) {
		return 0, false
	}
	secs := float64(remaining) / rate
	if secs > maxETA.Seconds() {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)).Round(time.Second), true
}

// lineLocked renders the terminal progress line for s, fitted to the
// terminal's width (see fitFields).
func (p *progress) lineLocked(s progressSnapshot) string {
	return fitFields(p.lineFields(s), p.status.Width())
}

// lineField is one field of the progress line; fields with a lower drop
// rank are dropped first when the line does not fit.
type lineField struct {
	text string
	drop int
}

// lineFields returns the fields of the progress line, in display order.
// Like rclone's -P, a narrow terminal keeps what says whether the run is
// healthy (rows done, failures, 429s, the ETA) and drops what is merely
// interesting (the learned limit, the pace, elapsed time, the bar).
func (p *progress) lineFields(s progressSnapshot) []lineField {
	if p.opts.Open && !p.planned {
		return p.openFields(s)
	}
	eta := "?"
	if s.ETAKnown {
		eta = shortDuration(s.ETA)
	}
	pct := 100
	if s.Total > 0 {
		pct = min(100*s.Done/s.Total, 100)
	}
	fields := []lineField{
		{fmt.Sprintf("%3d%%", pct), 8},
		{renderBar(s.Done, s.Total), 2},
		{fmt.Sprintf("%d/%d rows", s.Done, s.Total), 9},
		{fmt.Sprintf("failed %d", s.Failed), 7},
		{fmt.Sprintf("429s %d", s.RateLimited), 6},
		{"ETA " + eta, 5},
		{fmt.Sprintf("%.1f rows/s", s.RowsPerSec), 4},
	}
	return p.paceFields(fields, s)
}

// openFields returns the fields of the line of a run without a total.
func (p *progress) openFields(s progressSnapshot) []lineField {
	fields := []lineField{
		{fmt.Sprintf("%d rows", s.Done), 9},
		{fmt.Sprintf("failed %d", s.Failed), 7},
		{fmt.Sprintf("429s %d", s.RateLimited), 6},
	}
	if p.opts.Note != nil {
		if note := p.opts.Note(); note != "" {
			fields = append(fields, lineField{note, 5})
		}
	}
	fields = append(fields, lineField{fmt.Sprintf("%.1f rows/s", s.RowsPerSec), 4})
	return p.paceFields(fields, s)
}

// paceFields appends the pace, the elapsed time and the learned limit.
func (p *progress) paceFields(fields []lineField, s progressSnapshot) []lineField {
	if p.opts.Pacer != nil {
		pace := "-"
		if s.Pace.Rate > 0 {
			pace = trimFloat(s.Pace.Rate) + "/s"
		}
		fields = append(fields, lineField{"pace " + pace, 3})
	}
	fields = append(fields, lineField{"elapsed " + shortDuration(s.Elapsed), 1})
	if p.opts.Pacer != nil {
		learned := "?"
		if s.Pace.Known {
			learned = fmt.Sprintf("%s/s burst %d", trimFloat(s.Pace.Learned), s.Pace.Burst)
		}
		fields = append(fields, lineField{"learned " + learned, 0})
	}
	return fields
}

// fitFields joins fields with two spaces (the bar and its percentage with
// one), dropping the fields of lowest rank until the line is shorter than
// width (0: no limit); a single field left is cut.
func fitFields(fields []lineField, width int) string {
	join := func(fs []lineField) string {
		var b strings.Builder
		for i, f := range fs {
			if i > 0 {
				if strings.HasPrefix(f.text, "[") || strings.HasPrefix(fs[i-1].text, "[") {
					b.WriteString(" ")
				} else {
					b.WriteString("  ")
				}
			}
			b.WriteString(f.text)
		}
		return b.String()
	}
	fields = slices.Clone(fields)
	for {
		line := join(fields)
		if width <= 0 || utf8.RuneCountInString(line) < width || len(fields) == 1 {
			return fitWidth(line, width)
		}
		lowest := 0
		for i, f := range fields {
			if f.drop < fields[lowest].drop {
				lowest = i
			}
		}
		fields = slices.Delete(fields, lowest, lowest+1)
	}
}

// renderBar draws a bar of barWidth cells, "[=====>    ]".
func renderBar(done, total int) string {
	filled := barWidth
	if total > 0 {
		filled = min(barWidth*done/total, barWidth)
	}
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", filled))
	if filled < barWidth {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", barWidth-filled-1))
	}
	b.WriteByte(']')
	return b.String()
}

// paceFigures is what a Pacer shows of its pace: the current rate and the
// tenant's learned refill rate and bucket size (Learned is 0 until Known).
type paceFigures struct {
	Rate    float64
	Learned float64
	Burst   int
	Known   bool
}

// readPace reads p's figures; a nil p gives zeros. An unlimited rate reads
// as 0.
func readPace(p *ratelimit.Pacer) paceFigures {
	if p == nil {
		return paceFigures{}
	}
	rate, burst, known := p.Learned()
	f := paceFigures{Rate: finite(p.Limit()), Burst: burst, Known: known}
	if known {
		f.Learned = finite(rate)
	}
	return f
}

func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// trimFloat formats v with at most one decimal, without a trailing ".0".
func trimFloat(v float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
}

// shortDuration formats d to the second: "45s", "3m05s", "2h07m".
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// isTerminal reports whether w is a terminal (a file such as os.Stderr
// whose descriptor is a TTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth returns the width of the terminal w is, or 0 when w is not
// a terminal or its size is unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// statusWriter writes to a terminal and keeps one status line (the progress
// line) below everything written through it: each Write first erases the
// status line, writes, and draws it again, so log lines scroll above it and
// never mix with it. Until SetStatus is called it passes writes through
// unchanged. It is safe for concurrent use; Write returns the error of the
// underlying writer.
type statusWriter struct {
	mu      sync.Mutex
	out     io.Writer
	line    string // the status line; "" for none
	shown   bool   // line is on the terminal
	midLine bool   // the last write did not end its line
	ended   bool
}

const (
	eraseLine = "\r\x1b[2K" // carriage return, erase the whole line
	eraseEOL  = "\x1b[K"    // erase from the cursor to the end of the line
)

// newStatusWriter returns a statusWriter writing to out.
func newStatusWriter(out io.Writer) *statusWriter { return &statusWriter{out: out} }

// Write writes b above the status line.
func (s *statusWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.shown {
		n, err := s.out.Write(b)
		if len(b) > 0 {
			s.midLine = b[len(b)-1] != '\n'
		}
		if err == nil {
			s.drawLocked()
		}
		return n, err
	}
	// One write: erase the status line, the text, the status line again.
	buf := make([]byte, 0, len(eraseLine)+len(b)+len(s.line)+8)
	buf = append(buf, eraseLine...)
	buf = append(buf, b...)
	s.shown = false
	if len(b) > 0 {
		s.midLine = b[len(b)-1] != '\n'
	}
	if !s.midLine {
		buf = append(buf, s.line...)
		buf = append(buf, eraseEOL...)
		s.shown = true
	}
	n, err := s.out.Write(buf)
	n = min(max(n-len(eraseLine), 0), len(b))
	if err != nil {
		s.shown = false
	}
	return n, err
}

// Width returns the width of the terminal the writer writes to, or 0 when
// it is not a terminal or its width is unknown.
func (s *statusWriter) Width() int { return terminalWidth(s.out) }

// SetStatus replaces the status line with line, cut to the terminal's
// width. It does nothing after EndStatus.
func (s *statusWriter) SetStatus(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.line = fitWidth(line, terminalWidth(s.out))
	s.drawLocked()
}

// EndStatus draws line (when not empty) as the last status line, ends it
// with a newline, and makes the writer pass writes through from then on.
func (s *statusWriter) EndStatus(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	if line != "" {
		s.line = fitWidth(line, terminalWidth(s.out))
		s.drawLocked()
	}
	if s.shown {
		_, _ = io.WriteString(s.out, "\n")
	}
	s.shown, s.line = false, ""
}

// drawLocked draws the status line over the current one, unless the last
// write left a line unfinished. A failed draw is not an error of anyone's
// write; the next draw tries again.
func (s *statusWriter) drawLocked() {
	if s.line == "" || s.midLine {
		return
	}
	prefix := "\r"
	if s.shown {
		prefix = eraseLine
	}
	_, err := io.WriteString(s.out, prefix+s.line+eraseEOL)
	s.shown = err == nil
}

// fitWidth cuts line to fewer than width characters (0: no limit), so that
// it never wraps: an erase only reaches the last line.
func fitWidth(line string, width int) string {
	if width <= 0 {
		return line
	}
	r := []rune(line)
	if len(r) < width {
		return line
	}
	return string(r[:width-1])
}

// summaryExtra is what the end-of-run summary needs besides batch.Summary.
type summaryExtra struct {
	Results string // the results file path ("-" for standard output)
	Pace    paceFigures
}

// newSummaryExtra gathers the summary's extra figures; p may be nil.
func newSummaryExtra(results string, p *ratelimit.Pacer) summaryExtra {
	return summaryExtra{Results: results, Pace: readPace(p)}
}

// effectiveRate returns the requests per second sent over the whole run.
func effectiveRate(sum batch.Summary) float64 {
	if sum.Elapsed <= 0 {
		return 0
	}
	return float64(sum.Requests) / sum.Elapsed.Seconds()
}

// zapFields returns the rate figures for the summary log line:
// effective_rps, pace_rps, learned_limit_rps (0 until learned) and
// learned_burst.
func (e summaryExtra) zapFields(sum batch.Summary) []zap.Field {
	return []zap.Field{
		zap.Float64("effective_rps", round2(effectiveRate(sum))),
		zap.Float64("pace_rps", round2(e.Pace.Rate)),
		zap.Float64("learned_limit_rps", round2(e.Pace.Learned)),
		zap.Int("learned_burst", e.Pace.Burst),
	}
}

// writeSummaryTable writes the end-of-run summary for people, as a small
// aligned table: rows by status, requests, 429s, retries, elapsed time, the
// effective request rate against the learned limit, and the results file.
// It returns nothing: a summary that cannot be shown is no reason to fail.
func writeSummaryTable(w io.Writer, sum batch.Summary, extra summaryExtra) {
	type entry struct{ name, value string }
	var rows []entry
	add := func(name string, value any) { rows = append(rows, entry{name, fmt.Sprint(value)}) }
	for _, st := range batch.Statuses {
		add(string(st), sum.Counts[st])
	}
	for _, st := range sortedKeys(sum.Counts) {
		if !st.Known() {
			add(string(st), sum.Counts[st])
		}
	}
	for _, wn := range sortedKeys(sum.Warnings) {
		if sum.Warnings[wn] > 0 {
			add("warning "+wn, sum.Warnings[wn])
		}
	}
	if sum.Kept > 0 {
		add("kept from earlier run", sum.Kept)
	}
	if sum.Remaining > 0 {
		add("remaining", sum.Remaining)
	}
	add("requests", sum.Requests)
	add("429s", sum.RateLimited)
	add("retries", sum.Retries)
	add("elapsed", shortDuration(sum.Elapsed))
	add("effective rate", trimFloat(effectiveRate(sum))+"/s")
	learned := "not learned"
	if extra.Pace.Known {
		learned = fmt.Sprintf("%s/s burst %d", trimFloat(extra.Pace.Learned), extra.Pace.Burst)
	}
	add("learned limit", learned)
	width := 0
	for _, r := range rows {
		width = max(width, len(r.value))
	}
	// Names left, figures right; the path, which may be long, is not padded.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%*s\n", r.name, width, r.value)
	}
	fmt.Fprintf(tw, "results\t%s\n", extra.Results)
	_ = tw.Flush()
}

func sortedKeys[K ~string](m map[K]int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
