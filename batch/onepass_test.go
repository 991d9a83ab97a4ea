package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// dryRunResults runs a dry run of input and returns its results file and
// summary: with twoPass, through the plan's pre-pass and the pool, as every
// run did before Config.OnePass; otherwise in one pass.
func dryRunResults(t *testing.T, input string, twoPass bool, done *LineSet) ([]byte, Summary, error) {
	t.Helper()
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input)), nil }
	if !twoPass {
		// A reader that tells its size, as a file's does, for the index
		// to make room for the rows it holds.
		open = func() (io.ReadCloser, error) { return sizedReader{strings.NewReader(input)}, nil }
	}
	r := &Runner{Config: DefaultConfig(), Done: done}
	r.Config.DryRun = true
	planned := -1
	r.Hooks.Plan = func(_, todo int) { planned = todo }
	if twoPass {
		plan, err := ReadPlan(open)
		if err != nil {
			t.Fatalf("ReadPlan() error = %v", err)
		}
		r.Plan = plan
	}
	var out bytes.Buffer
	w, err := NewResultWriter(&out, true)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background(), open, w)
	if planned != sum.Rows-done.Len() {
		t.Errorf("Hooks.Plan got %d rows to do, want %d", planned, sum.Rows-done.Len())
	}
	return out.Bytes(), sum, err
}

// sizedReader is an input that tells its size (see inputSize).
type sizedReader struct{ *strings.Reader }

func (sizedReader) Close() error { return nil }

// checkOnePass checks that a one-pass dry run of input writes the same
// results, byte for byte, and the same summary as the two-pass run.
func checkOnePass(t *testing.T, input string, done *LineSet) {
	t.Helper()
	want, wantSum, wantErr := dryRunResults(t, input, true, done)
	got, gotSum, gotErr := dryRunResults(t, input, false, done)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("one pass: error = %v; two passes: %v", gotErr, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("one pass wrote\n%s\ntwo passes wrote\n%s\ninput:\n%s", got, want, input)
	}
	if fmt.Sprint(gotSum.Counts) != fmt.Sprint(wantSum.Counts) || gotSum.Rows != wantSum.Rows ||
		gotSum.Kept != wantSum.Kept || gotSum.Remaining != wantSum.Remaining {
		t.Fatalf("one pass: summary %+v; two passes: %+v", gotSum, wantSum)
	}
	if gotSum.Rows > 0 && gotSum.IndexBytes <= 0 {
		t.Errorf("one pass: IndexBytes = %d, want > 0", gotSum.IndexBytes)
	}
}

func TestOnePassMatchesTwoPasses(t *testing.T) {
	sample, err := os.ReadFile("../samples/pairs-with-mistakes.csv")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		input string
	}{
		{"sample with mistakes", string(sample)},
		{"clashes", planHeader + strings.Join([]string{
			"auth0|1,github|1,,,",                     // 2
			"auth0|1,github|1,,,",                     // 3: repeats 2
			"auth0|2,github|1,,,",                     // 4: secondary again
			"auth0|2,github|1,,,",                     // 5: repeats 4, though 4 is refused
			"auth0|1,github|1,,con_Ab12Cd34Ef56Gh78,", // 6: same pair, another connection
			"auth0|1,github|1,,con_Ab12Cd34Ef56Gh78,", // 7: repeats 6
			"auth0|1,1,github,,",                      // 8: repeats 2, written with a provider
			"github|1,auth0|1,,,",                     // 9: 2 the other way round
			"github|1,auth0|3,,,",                     // 10: primary is a secondary
			"auth0|4,auth0|1,,,",                      // 11: secondary is a primary
			"auth0|5,,,," + testJWT,                   // 12
			"auth0|5,,,," + testJWT,                   // 13: repeats 12
			"github|1,,,," + testJWT,                  // 14: primary is a secondary
			"auth0|6,auth0|6,,,",                      // 15: self-link
			"auth0|7,github|\xff,,,",                  // 16: not UTF-8
			"auth0|8,github|8\"x,,,",                  // 17: stray quote
			"auth0|9,github|9,,",                      // 18: a field short
			"",                                        // 19: blank
			"\"auth0|10\",\"github|10\nx\",,,",        // 20-21: a field over two lines
			"auth0|11,github|11,,,",                   // 22
			"github|11,auth0|11,,,",                   // 23: 22 reversed
			"github|11,auth0|12,,,",                   // 24
			"auth0|12,github|12,,,",                   // 25: primary was a secondary on 24
		}, "\n") + "\n"},
		{"header only", planHeader},
		{"rows enough for the index to make room", func() string {
			var b strings.Builder
			b.WriteString(planHeader)
			for i := range 6000 {
				fmt.Fprintf(&b, "auth0|%d,github|%d,,,\n", i, i%5000) // some secondaries again
			}
			return b.String()
		}()},
		{"UTF-8 mark, CRLF, semicolons", "\ufeffprimary_user_id;secondary_user_id\r\nauth0|1;github|1\r\nauth0|1;github|1\r\n"},
		{"unclosed quote", planHeader + "auth0|1,github|1,,,\n\"auth0|2,github|2,,,\nauth0|3,github|3,,,\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOnePass(t, tt.input, nil)
		})
	}
}

// TestOnePassMatchesTwoPassesRandom compares the two ways on random files
// drawn from few users, so that every kind of clash is frequent, some rows
// kept from an earlier run.
func TestOnePassMatchesTwoPassesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	users := []string{"auth0|1", "auth0|2", "github|1", "github|2", "samlp|acme|1", "samlp|acme|2", "auth0|github|1"}
	for iter := range 1000 {
		var b strings.Builder
		b.WriteString(planHeader)
		rows := 1 + rng.IntN(16)
		for range rows {
			primary, secondary := users[rng.IntN(len(users))], users[rng.IntN(len(users))]
			provider, conn, linkWith := "", "", ""
			switch rng.IntN(12) {
			case 0:
				secondary, linkWith = "", []string{testJWT, testJWT + "x"}[rng.IntN(2)]
			case 1:
				provider, secondary, _ = strings.Cut(secondary, "|")
				secondary = []string{secondary, provider + "|" + secondary}[rng.IntN(2)]
			case 2:
				conn = []string{testConn, "con_Zz12Cd34Ef56Gh78"}[rng.IntN(2)]
			case 3:
				secondary = "foo|1"
			case 4:
				secondary += "\xfe"
			case 5:
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", primary, secondary, provider, conn, linkWith)
		}
		var done *LineSet
		if iter%3 == 0 {
			done = &LineSet{}
			for range rng.IntN(4) {
				done.Add(2 + rng.IntN(rows))
			}
		}
		input := b.String()
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			checkOnePass(t, input, done)
		})
	}
}

// TestConflictIndexMatchesModel checks the index against the direct
// reading of BuildPlan's rules, on many rows, so that its tables grow, by
// themselves or as reserve asks, before any row or after some.
func TestConflictIndexMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var b strings.Builder
	b.WriteString(planHeader)
	for range 3000 {
		fmt.Fprintf(&b, "auth0|%d,github|%d,,,\n", rng.IntN(2000), rng.IntN(2000))
		if rng.IntN(5) == 0 {
			fmt.Fprintf(&b, "github|%d,auth0|%d,,,\n", rng.IntN(2000), rng.IntN(2000))
		}
	}
	rows := readAll(t, b.String())
	want := modelVerdicts(rows)
	tests := []struct {
		name            string
		reserveAt, size int // reserve size users after reserveAt rows; none when size is 0
	}{
		{"no reserve", 0, 0},
		{"reserve first", 0, 4000},
		{"reserve after 500 rows", 500, 4000},
		{"reserve too little", 100, 2500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newConflictIndex()
			defer x.free()
			k := x.keyer()
			held := 0
			for i, row := range rows {
				if tt.size > 0 && i == tt.reserveAt {
					before := x.users.size
					x.reserve(tt.size)
					if x.users.size <= before {
						t.Fatalf("reserve(%d) grew no table: %d bytes", tt.size, x.users.size)
					}
				}
				v, ok, err := x.add(k.row(&row))
				if err != nil {
					t.Fatal(err)
				}
				got := Verdict{}
				if ok {
					got = v.verdict()
					held++
				}
				if w := want[row.Line]; got != w {
					t.Fatalf("line %d: verdict %+v, want %+v", row.Line, got, w)
				}
			}
			if held < 100 || held == len(rows) {
				t.Fatalf("%d of %d rows held: the input does not test much", held, len(rows))
			}
		})
	}
}

// TestOnePassInterrupted checks that a one-pass run cancelled before its
// end counts every row of the input, those it did not reach as remaining.
func TestOnePassInterrupted(t *testing.T) {
	input := planHeader + strings.Repeat("auth0|1,github|1,,,\n", 5000)
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input)), nil }
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{Config: DefaultConfig()}
	r.Config.DryRun = true
	r.Hooks.Result = func(res Result) {
		if res.Line == 2000 {
			cancel()
		}
	}
	var out bytes.Buffer
	w, err := NewResultWriter(&out, true)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, open, w)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run() error = %v, want ErrInterrupted", err)
	}
	written := sum.Counts[StatusPlanned] + sum.Counts[StatusSkipped]
	if sum.Rows != 5000 || written >= 5000 || sum.Remaining != 5000-written {
		t.Fatalf("summary: %d rows, %d written, %d remaining", sum.Rows, written, sum.Remaining)
	}
	if lines := bytes.Count(out.Bytes(), []byte("\n")); lines != written+1 {
		t.Errorf("results file has %d lines, want %d", lines, written+1)
	}
}

// failingWriter takes n bytes, then fails every write.
type failingWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errDiskFull
	}
	f.n -= len(p)
	return len(p), nil
}

// failingSink is a Sink that fails to append the result of line fail.
type failingSink struct {
	fail    int
	written int
}

func (s *failingSink) Append(res Result) error {
	if res.Line == s.fail {
		return errDiskFull
	}
	s.written++
	return nil
}

func (s *failingSink) Flush() error { return nil }

// TestOnePassWriteFails checks that a one-pass run whose results cannot be
// written stops writing, returns the error, and counts every row of the
// input, those without a result as remaining, whatever the sink.
func TestOnePassWriteFails(t *testing.T) {
	const rows = 20_000
	var b strings.Builder
	b.WriteString(planHeader)
	for i := range rows {
		fmt.Fprintf(&b, "auth0|%d,github|%d,,,\n", i, i)
	}
	input := b.String()
	tests := []struct {
		name string
		sink func(t *testing.T) (Sink, func() int) // the sink, and how many results it holds
	}{
		{"results file", func(t *testing.T) (Sink, func() int) {
			w, err := NewResultWriter(&failingWriter{n: 300 << 10}, false)
			if err != nil {
				t.Fatal(err)
			}
			return w, func() int { return -1 } // not known: bytes, not rows
		}},
		{"other sink", func(t *testing.T) (Sink, func() int) {
			s := &failingSink{fail: 7000}
			return s, func() int { return s.written }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input)), nil }
			r := &Runner{Config: DefaultConfig()}
			r.Config.DryRun = true
			hooked := 0
			r.Hooks.Result = func(Result) { hooked++ }
			sink, held := tt.sink(t)
			sum, err := r.Run(context.Background(), open, sink)
			if !errors.Is(err, errDiskFull) {
				t.Fatalf("Run() error = %v, want the write's", err)
			}
			written := sum.Counts[StatusPlanned]
			if sum.Rows != rows || written == 0 || written >= rows || sum.Remaining != rows-written || hooked != written {
				t.Fatalf("summary: %d rows, %d written, %d remaining, %d told to the hook", sum.Rows, written, sum.Remaining, hooked)
			}
			if n := held(); n >= 0 && n != written {
				t.Errorf("the sink holds %d results, the summary counts %d", n, written)
			}
		})
	}
}
