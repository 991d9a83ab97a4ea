package batch

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReaderUnclosedQuoteKeepsTheRest: one unclosed quote near the top of
// a long file refuses its own row only; every other row is read, and the
// plan counts every row.
func TestReaderUnclosedQuoteKeepsTheRest(t *testing.T) {
	const n = 1000
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	b.WriteString("auth0|p0,\"google-oauth2|s0\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "auth0|p%d,google-oauth2|s%d\n", i, i)
	}
	rows := readAll(t, b.String())
	if len(rows) != n {
		t.Fatalf("got %d rows, want %d", len(rows), n)
	}
	var pe *csv.ParseError
	if rows[0].Line != 2 || !errors.As(rows[0].Err, &pe) || !errors.Is(pe, ErrUnclosedQuote) || pe.StartLine != 2 || pe.Column != 10 {
		t.Errorf("row 0 = line %d, err %v; want line 2, an unclosed quote at column 10", rows[0].Line, rows[0].Err)
	}
	for i, row := range rows[1:] {
		if row.Line != i+3 || row.Err != nil {
			t.Fatalf("row %d = line %d, err %v; want line %d, valid", i+1, row.Line, row.Err, i+3)
		}
	}
	plan, err := BuildPlan(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Rows() != n {
		t.Errorf("plan has %d rows, want %d", plan.Rows(), n)
	}
	if v, held := plan.Verdict(2); !held || v.Status != StatusInvalid || !strings.Contains(v.Err, "line 2, column 10") {
		t.Errorf("Verdict(2) = %+v, %v; want invalid naming line 2", v, held)
	}
}

// TestReaderUnclosedQuoteInHeader: a header whose quote never closes is an
// error naming its line, not a header taken from a data row.
func TestReaderUnclosedQuoteInHeader(t *testing.T) {
	_, err := NewReader(strings.NewReader("\"primary_user_id,secondary_user_id\nprimary_user_id,secondary_user_id\nauth0|1,github|1\n"))
	if !errors.Is(err, ErrUnclosedQuote) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("NewReader() error = %v, want an unclosed quote on line 1", err)
	}
}

// TestReaderIOErrorDropsPartialRow: a row cut short by a read error is never
// returned, whatever the cut leaves (a valid-looking prefix, a quote).
func TestReaderIOErrorDropsPartialRow(t *testing.T) {
	errCut := errors.New("input changed")
	head := "primary_user_id,secondary_user_id\nauth0|1,github|1\n"
	for _, tail := range []string{"", "auth0|2,github|2", "auth0|2,git\"hub", "auth0|2,\"github|2\n\"x", "auth0|2,github|2\r"} {
		rd, err := NewReader(io.MultiReader(strings.NewReader(head+tail), iotest.ErrReader(errCut)))
		if err != nil {
			t.Fatal(err)
		}
		var rows []Row
		for {
			row, err := rd.Next()
			if err != nil {
				if !errors.Is(err, errCut) {
					t.Errorf("tail %q: Next() error = %v, want %v", tail, err, errCut)
				}
				break
			}
			rows = append(rows, row)
		}
		if len(rows) != 1 || rows[0].Line != 2 || rows[0].Err != nil {
			t.Errorf("tail %q: rows = %v, want only line 2", tail, rows)
		}
	}
}

// csvRecords parses in with encoding/csv as the Reader configures it, but
// with any number of fields, and returns each record or error with its
// line.
func csvRecords(in io.Reader) []string {
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	var out []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out = append(out, fmt.Sprintf("parse error: %v", err))
			continue
		}
		line, _ := cr.FieldPos(0)
		out = append(out, fmt.Sprintf("%d: %q", line, rec))
	}
}

// FuzzSplitter: the splitter finds row ends as encoding/csv does. When it
// refuses no row, the parser sees exactly what it would have seen without
// it; it never changes the number of lines, and every refused row starts on
// a line whose row encoding/csv would also have rejected or that runs past
// the bounds.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("a,b\n1,2\n"))
	f.Add([]byte("a,b\n\"1\n2\",3\n"))
	f.Add([]byte("a,b\n\"1,2\n3,4\n"))
	f.Add([]byte("a,b\n1,\"x\"\"y\"\r\n\"a\"b,c\n\"q\n\"z,\n"))
	f.Add([]byte("a,\"\n\n\n\"\"\n"))
	f.Add([]byte("a,b\r\n\"x\"\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sp := &splitter{src: bufio.NewReaderSize(bytes.NewReader(data), 16)}
		out, err := io.ReadAll(sp)
		if err != nil {
			t.Fatalf("ReadAll() error = %v", err)
		}
		if got, want := bytes.Count(out, []byte("\n")), bytes.Count(data, []byte("\n")); got != want && !(len(sp.unclosed) > 0 && got == want+1 && !bytes.HasSuffix(data, []byte("\n"))) {
			t.Fatalf("output has %d lines ends, input %d", got, want)
		}
		if len(sp.unclosed) == 0 {
			if got, want := csvRecords(bytes.NewReader(out)), csvRecords(bytes.NewReader(data)); !reflect.DeepEqual(got, want) {
				t.Fatalf("records differ:\nthrough the splitter %q\nalone %q", got, want)
			}
			return
		}
		// The input's own parse must fail at or before the first refused
		// row, or that row must span more than the bounds allow.
		u := sp.unclosed[0]
		lines := bytes.SplitAfter(data, []byte("\n"))
		rest := bytes.Join(lines[u.line-1:], nil)
		recs := csvRecords(bytes.NewReader(rest))
		if len(recs) > 0 && !strings.Contains(recs[0], "parse error") && len(rest) <= maxRowBytes && bytes.Count(rest, []byte("\n")) < maxRowLines {
			t.Fatalf("line %d refused, but encoding/csv reads it as %s", u.line, recs[0])
		}
	})
}

// TestSplitterHoldsOneRow: the splitter holds at most a read's worth and a
// row, however long the input, and passes a long row on without copying
// it over and over.
func TestSplitterHoldsOneRow(t *testing.T) {
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	for i := range 20000 {
		fmt.Fprintf(&b, "auth0|%d,github|%d\n", i, i)
	}
	sp := &splitter{src: bufio.NewReaderSize(strings.NewReader(b.String()), 64<<10)}
	cr := csv.NewReader(sp)
	most := 0
	for {
		if _, err := cr.Read(); err != nil {
			break
		}
		most = max(most, cap(sp.out))
	}
	if most > 16<<10 {
		t.Errorf("the splitter held up to %d bytes for rows of 30", most)
	}
}

// TestReaderLineTooLong: a line longer than maxLineBytes is refused as a
// row of its own, naming its line, without being held (the splitter keeps
// at most maxLineBytes of it); the rows around it are read, wherever it
// stands: among rows, at the end without a line end, inside a quoted field
// spanning lines (which it ends), or as the header.
func TestReaderLineTooLong(t *testing.T) {
	long := "auth0|" + strings.Repeat("x", maxLineBytes+10)
	tests := []struct {
		name string
		body string
		want []string // per row: "ok" or the error it must hold
	}{
		{name: "among rows", body: "auth0|a,github|a\n" + long + ",github|b\nauth0|c,github|c\n",
			want: []string{"ok", "line 3, column 1: line longer than 1 MiB", "ok"}},
		{name: "last, no line end", body: "auth0|a,github|a\n" + long,
			want: []string{"ok", "line 3, column 1: line longer than 1 MiB"}},
		{name: "in a quoted field", body: "auth0|a,\"github|a\n" + long + "\nauth0|c,github|c\n",
			want: []string{"line 2, column 9: quote opened here", "line 3, column 1: line longer than 1 MiB", "ok"}},
		{name: "in a row of CRLF lines", body: "auth0|a,github|a\r\n" + long + "\r\nauth0|c,github|c\r\n",
			want: []string{"ok", "line 3, column 1: line longer than 1 MiB", "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := readAll(t, "primary_user_id,secondary_user_id\n"+tt.body)
			if len(rows) != len(tt.want) {
				t.Fatalf("got %d rows, want %d", len(rows), len(tt.want))
			}
			for i, w := range tt.want {
				switch {
				case w == "ok" && rows[i].Err != nil:
					t.Errorf("row %d (line %d): %v, want valid", i, rows[i].Line, rows[i].Err)
				case w != "ok" && (rows[i].Err == nil || !strings.Contains(rows[i].Err.Error(), w)):
					t.Errorf("row %d (line %d): %v, want %q", i, rows[i].Line, rows[i].Err, w)
				}
			}
		})
	}
	_, err := NewReader(strings.NewReader(long + "\nauth0|a,github|a\n"))
	if !errors.Is(err, ErrLineTooLong) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a header line too long: %v, want ErrLineTooLong on line 1", err)
	}
	sp := &splitter{src: bufio.NewReaderSize(strings.NewReader(strings.Repeat(long, 8)+"\nauth0|a,github|a\n"), 64<<10)}
	if _, err := io.ReadAll(sp); err != nil {
		t.Fatal(err)
	}
	if cap(sp.long) > 2*maxLineBytes {
		t.Errorf("the splitter held %d bytes of a line of %d", cap(sp.long), 8*len(long))
	}
}
