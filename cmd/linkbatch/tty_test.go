package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/ratelimit"
)

// ansiRE matches the terminal control sequences the status line uses.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// runOnTerminal runs the binary with a pseudo-terminal of the given width
// as its standard streams and returns everything it wrote and its exit
// code.
func runOnTerminal(t *testing.T, cols int, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TERM=xterm"}
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: uint16(cols)})
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&out, ptmx) // ends with EIO once the child is gone
	}()
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// TestTerminalOutput: on a terminal the log is the human format (a line
// per problem, none for rows that went well, no JSON) and no progress line
// is as wide as the terminal; the progress line keeps the failures and 429s
// at 80 columns and shows more at 120.
func TestTerminalOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("waits on the simulated tenant")
	}
	in := filepath.Join("..", "..", "samples", "pairs-with-mistakes.csv")
	for _, cols := range []int{80, 120} {
		t.Run(fmt.Sprintf("%d columns", cols), func(t *testing.T) {
			out, code := runOnTerminal(t, cols, "run", "--simulate", "--in", in, "--out", filepath.Join(t.TempDir(), "r.csv"))
			if code != exitProblems {
				t.Fatalf("exit %d, want %d\n%s", code, exitProblems, out)
			}
			if strings.Contains(out, `{"level"`) {
				t.Errorf("JSON log on a terminal:\n%s", out)
			}
			var bars []string
			for _, line := range strings.Split(out, "\n") {
				for _, seg := range strings.Split(line, "\r") {
					seg = ansiRE.ReplaceAllString(seg, "")
					if strings.Contains(seg, "WARN  line ") {
						if n := utf8.RuneCountInString(seg); n >= cols {
							t.Errorf("a row's log line of %d characters on a %d-column terminal: %q", n, cols, seg)
						}
						continue
					}
					if !strings.Contains(seg, " rows  ") {
						continue // another log line, which may wrap
					}
					bars = append(bars, seg)
					if n := utf8.RuneCountInString(seg); n >= cols {
						t.Errorf("a progress line of %d characters on a %d-column terminal: %q", n, cols, seg)
					}
				}
			}
			if len(bars) == 0 {
				t.Fatalf("no progress line:\n%s", out)
			}
			last := bars[len(bars)-1]
			for _, want := range []string{"9/9 rows", "failed 0", "429s ", "ETA "} {
				if !strings.Contains(last, want) {
					t.Errorf("the last progress line %q lacks %q", last, want)
				}
			}
			if cols == 120 && !strings.Contains(last, "rows/s") {
				t.Errorf("at 120 columns the progress line %q lacks the rate", last)
			}
			for _, want := range []string{"WARN  line 4: invalid", "WARN  line 10: invalid", "WARN  line 6: invalid  auth0|", "summary", "requests"} {
				if !strings.Contains(out, want) {
					t.Errorf("the terminal lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "line 2: linked") {
				t.Errorf("a row that went well has a line at the default level:\n%s", out)
			}
		})
	}
}

// TestProgressLineFits: the progress line of a paced run fits 80 and 120
// columns by dropping its least useful fields first: failures, 429s and
// the ETA stay.
func TestProgressLineFits(t *testing.T) {
	p := &progress{opts: progressOptions{Pacer: &ratelimit.Pacer{}}}
	s := progressSnapshot{Done: 123456, Total: 1000000, RowsPerSec: 14.9, Pace: paceFigures{Rate: 15, Learned: 15, Burst: 20, Known: true},
		RateLimited: 3, Failed: 12, Elapsed: 2*time.Hour + 17*time.Minute, ETA: 16 * time.Hour, ETAKnown: true}
	full := fitFields(p.lineFields(s), 0)
	if utf8.RuneCountInString(full) < 120 {
		t.Fatalf("the full line %q fits 120 columns; the test proves nothing", full)
	}
	tests := []struct {
		width      int
		want, gone []string
	}{
		{80, []string{"123456/1000000 rows", "failed 12", "429s 3", "ETA 16h00m", " 12%"}, []string{"learned", "elapsed"}},
		{120, []string{"123456/1000000 rows", "failed 12", "429s 3", "ETA 16h00m", "14.9 rows/s", "pace 15/s", "[==>"}, []string{"learned"}},
		{40, []string{"123456/1000000 rows"}, nil},
	}
	for _, tt := range tests {
		line := fitFields(p.lineFields(s), tt.width)
		if n := utf8.RuneCountInString(line); n >= tt.width {
			t.Errorf("width %d: line of %d characters: %q", tt.width, n, line)
		}
		for _, w := range tt.want {
			if !strings.Contains(line, w) {
				t.Errorf("width %d: %q lacks %q", tt.width, line, w)
			}
		}
		for _, g := range tt.gone {
			if strings.Contains(line, g) {
				t.Errorf("width %d: %q keeps %q, which goes first", tt.width, line, g)
			}
		}
	}
}

// TestFitHumanRow: a row's line that is too wide for the terminal loses
// the middles of its ids first, then the end of what follows its status;
// its number and status are never cut.
func TestFitHumanRow(t *testing.T) {
	long := humanRow{head: "line 6: invalid", primary: "auth0|64b0c1f2a9e1d3b4c5d6e720", secondary: "auth0|64b0c1f2a9e1d3b4c5d6e7b0", ids: true,
		rest: `  connection_id: "con_short" is not a connection id (want con_ and 16 letters or digits)`}
	short := humanRow{head: "line 2: invalid", primary: "auth0|1", secondary: "myspace|2", ids: true, rest: "  secondary_user_id: unknown provider"}
	provider := humanRow{head: "line 9: failed", primary: "auth0|64b0c1f2a9e1d3b4c5d6e799", secondary: "107740211234567890123999", provider: "google-oauth2", ids: true,
		rest: "  [too_many_requests]  retries exhausted"}
	tests := []struct {
		name  string
		row   humanRow
		width int
		want  []string // substrings of the line
	}{
		{"fits", short, 100, []string{short.text(0)}},
		{"no limit", long, 0, []string{long.text(0)}},
		{"ids cut", long, 150, []string{"line 6: invalid  auth0|64b0", "…", "e720 <- auth0|64b0", "…",
			`e7b0  connection_id: "con_short" is not a connection id (want con_ and 16 letters or digits)`}},
		{"ids and error cut", long, 65, []string{"line 6: invalid  auth0|…6e720 <- auth0|…6e7b0  connection_id: \"…"}},
		{"provider", provider, 120, []string{"line 9: failed  auth0|64b0", "e799 <- 1077", "3999 (google-oauth2)  [too_many_requests]  retries exhausted"}},
		{"status kept", long, 10, []string{"line 6: invalid"}},
		{"unreadable row", humanRow{head: "line 3: invalid", rest: "  " + strings.Repeat("record on line 3: wrong number of fields ", 3)}, 65, []string{"line 3: invalid  record on line 3", "…"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := fitHumanRow(tt.row, tt.width)
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q lacks %q", line, w)
				}
			}
			n := utf8.RuneCountInString(line)
			if tt.width > 0 && tt.width < utf8.RuneCountInString(tt.row.text(0)) && !strings.Contains(line, "…") {
				t.Errorf("width %d: %q is cut without an ellipsis", tt.width, line)
			}
			switch {
			case tt.width > 0 && tt.width <= len(tt.row.head)+1 && line != tt.row.head+"…":
				t.Errorf("width %d: %q, want the head alone, %q", tt.width, line, tt.row.head+"…")
			case tt.width > len(tt.row.head)+1 && n >= tt.width:
				t.Errorf("width %d: a line of %d characters: %q", tt.width, n, line)
			}
		})
	}
}

// TestHumanLog: the human format shows problems and run events on one
// short line each, leaves zero fields out, and shows a row that went well
// only at debug level.
func TestHumanLog(t *testing.T) {
	for _, level := range []zapcore.Level{zapcore.InfoLevel, zapcore.DebugLevel} {
		var buf bytes.Buffer
		log := zap.New(newHumanCore(zapcore.AddSync(&buf), level, nil))
		log.Info("row", zap.Int("line", 2), zap.String("primary", "auth0|1"), zap.String("secondary", "github|2"), zap.String("status", "linked"))
		log.Warn("row", zap.Int("line", 3), zap.String("primary", "auth0|3"), zap.String("secondary", "myspace|4"), zap.String("status", "invalid"),
			zap.String("error", "secondary_user_id: provider \"myspace\" is not a known identity provider"))
		log.With(zap.String("run", "r1")).Info("summary", zap.Int("rows", 2), zap.Int("failed", 0), zap.String("results", "out dir/r.csv"))
		out := buf.String()
		for _, want := range []string{
			`WARN  line 3: invalid  auth0|3 <- myspace|4  secondary_user_id: provider "myspace" is not a known identity provider`,
			`INFO  summary run=r1 rows=2 results="out dir/r.csv"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("level %s: log lacks %q:\n%s", level, want, out)
			}
		}
		if strings.Contains(out, "failed=") {
			t.Errorf("a zero field is shown:\n%s", out)
		}
		linked := strings.Contains(out, "line 2: linked")
		if linked != (level == zapcore.DebugLevel) {
			t.Errorf("level %s: a linked row shown = %v:\n%s", level, linked, out)
		}
	}
}
