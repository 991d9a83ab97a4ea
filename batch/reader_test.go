package batch

import (
	"encoding/csv"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads every row of input, failing the test on a structural or I/O
// error.
func readAll(t testing.TB, input string) []Row {
	t.Helper()
	rd, err := NewReader(strings.NewReader(input))
	if err != nil {
		t.Fatalf("NewReader() error = %v", err)
	}
	var rows []Row
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rows
		}
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		rows = append(rows, row)
	}
}

func TestNewReaderHeader(t *testing.T) {
	want := Row{Line: 2, Primary: "auth0|1", Secondary: "github|2", ConnectionID: testConn}.Check() // the reader checks every row
	tests := []struct {
		name  string
		input string
	}{
		{"canonical", "primary_user_id,secondary_user_id,connection_id\nauth0|1,github|2," + testConn + "\n"},
		{"upper case and spaces", " Primary_User_ID ,SECONDARY_USER_ID,\tConnection_Id\nauth0|1,github|2," + testConn + "\n"},
		{"other order", "connection_id,secondary_user_id,primary_user_id\n" + testConn + ",github|2,auth0|1\n"},
		{"unknown columns", "note,primary_user_id,email,secondary_user_id,connection_id,\nhi,auth0|1,a@b.c,github|2," + testConn + ",x\n"},
		{"BOM and CRLF", "\ufeffprimary_user_id,secondary_user_id,connection_id\r\nauth0|1,github|2," + testConn + "\r\n"},
		{"BOM before a quoted name", "\ufeff\"primary_user_id\",secondary_user_id,connection_id\nauth0|1,github|2," + testConn + "\n"},
		{"no final newline", "primary_user_id,secondary_user_id,connection_id\nauth0|1,github|2," + testConn},
		{"quoted values", "primary_user_id,secondary_user_id,connection_id\n\"auth0|1\",\"github|2\",\"" + testConn + "\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := readAll(t, tt.input)
			if len(rows) != 1 || rows[0] != want {
				t.Errorf("rows = %#v, want [%#v]", rows, want)
			}
		})
	}
}

func TestNewReaderStructuralErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  error // nil: any error that is none of the sentinels
	}{
		{"empty file", "", ErrNoHeader},
		{"only blank lines", "\n\r\n\n", ErrNoHeader},
		{"only a BOM", "\ufeff", ErrNoHeader},
		{"no primary column", "user_id,secondary_user_id\nauth0|1,github|2\n", ErrNoPrimaryColumn},
		{"primary column misspelt", "primary_userid,secondary_user_id\n", ErrNoPrimaryColumn},
		{"no secondary nor link_with column", "primary_user_id,connection_id\nauth0|1,\n", ErrNoSecondaryColumn},
		{"column twice", "primary_user_id,secondary_user_id,Primary_User_Id\n", ErrDuplicateColumn},
		{"header with stray quote", "primary_user_id,secondary\"_user_id\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(tt.input))
			if err == nil {
				t.Fatalf("NewReader() = %v, want an error", rd)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("NewReader() error = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				var pe *csv.ParseError
				if !errors.As(err, &pe) {
					t.Errorf("NewReader() error = %v, want it to wrap the *csv.ParseError", err)
				}
			}
			if _, perr := BuildPlan(strings.NewReader(tt.input)); perr == nil || perr.Error() != err.Error() {
				t.Errorf("BuildPlan() error = %v, want %v", perr, err)
			}
		})
	}
}

func TestNewReaderIOError(t *testing.T) {
	boom := errors.New("disk on fire")
	if _, err := NewReader(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("NewReader() error = %v, want it to wrap %v", err, boom)
	}
	input := io.MultiReader(strings.NewReader("primary_user_id,secondary_user_id\nauth0|1,github|2\n"), iotest.ErrReader(boom))
	rd, err := NewReader(input)
	if err != nil {
		t.Fatalf("NewReader() error = %v", err)
	}
	if row, err := rd.Next(); err != nil || row.Err != nil {
		t.Fatalf("Next() = %v, %v; want the first row", row, err)
	}
	for range 2 { // the error sticks
		if _, err := rd.Next(); !errors.Is(err, boom) {
			t.Fatalf("Next() error = %v, want it to wrap %v", err, boom)
		}
	}
	input = io.MultiReader(strings.NewReader("primary_user_id,secondary_user_id\nauth0|1,github|2\n"), iotest.ErrReader(boom))
	if _, err := BuildPlan(input); !errors.Is(err, boom) {
		t.Errorf("BuildPlan() error = %v, want it to wrap %v", err, boom)
	}
}

func TestReaderHeaderOnly(t *testing.T) {
	if rows := readAll(t, "primary_user_id,secondary_user_id\r\n"); len(rows) != 0 {
		t.Errorf("rows = %v, want none", rows)
	}
}

func TestReaderLines(t *testing.T) {
	input := "primary_user_id,secondary_user_id,note\n" + // 1
		"auth0|1,github|1,\n" + // 2
		"\n" + // 3: blank, not a row
		"\r\n" + // 4: blank
		"auth0|2,github|2,\"a note\n" + // 5: starts here
		"over\n" + // 6
		"three lines\"\n" + // 7
		"auth0|3,github|3,\"\"\"quoted\"\", one line\"\n" + // 8
		"\n" + // 9
		"auth0|4,github|4,\n" // 10
	rows := readAll(t, input)
	want := []int{2, 5, 8, 10}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %v", len(rows), len(want), rows)
	}
	for i, row := range rows {
		if row.Line != want[i] || row.Err != nil {
			t.Errorf("row %d = %v (err %v), want line %d and no error", i, row, row.Err, want[i])
		}
	}
}

func TestReaderBadRows(t *testing.T) {
	type wantRow struct {
		line    int
		primary string // of a readable row
		err     string // substring; "" for a valid row
	}
	tests := []struct {
		name  string
		input string
		want  []wantRow
	}{
		{
			name:  "stray quote",
			input: "primary_user_id,secondary_user_id\nauth0|1,git\"hub|1\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "bare \" in non-quoted-field"}, {3, "auth0|2", ""}},
		},
		{
			name:  "too many fields",
			input: "primary_user_id,secondary_user_id\nauth0|1,github|1,extra\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "wrong number of fields"}, {3, "auth0|2", ""}},
		},
		{
			name:  "too few fields",
			input: "primary_user_id,secondary_user_id\nauth0|1\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "wrong number of fields"}, {3, "auth0|2", ""}},
		},
		{
			name:  "text after closing quote",
			input: "primary_user_id,secondary_user_id\n\"auth0|1\"x,github|1\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "extraneous or missing \" in quoted-field"}, {3, "auth0|2", ""}},
		},
		{
			name:  "quote never closed",
			input: "primary_user_id,secondary_user_id\nauth0|1,\"github|1\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "line 2, column 9: quote opened here does not close"}, {3, "auth0|2", ""}},
		},
		{
			name:  "quote never closed on the last line",
			input: "primary_user_id,secondary_user_id\nauth0|1,github|1\nauth0|2,\"github|2",
			want:  []wantRow{{2, "auth0|1", ""}, {3, "", "line 3, column 9: quote opened here does not close"}},
		},
		{
			name: "quote closed within the bound",
			input: "primary_user_id,secondary_user_id,note\nauth0|1,github|1,\"a" + strings.Repeat("\n", maxRowLines-1) + "b\"\n" +
				"auth0|2,github|2,\n",
			want: []wantRow{{2, "auth0|1", ""}, {2 + maxRowLines, "auth0|2", ""}},
		},
		{
			name: "quote open past the line bound",
			input: "primary_user_id,secondary_user_id,note\nauth0|1,github|1,\"a" + strings.Repeat("\nauth0|x,github|x,", maxRowLines) + "b\"\n" +
				"auth0|2,github|2,\n",
			want: append(append([]wantRow{{2, "", "line 2, column 18: quote opened here"}}, func() []wantRow {
				var w []wantRow
				for i := range maxRowLines - 1 {
					w = append(w, wantRow{3 + i, "auth0|x", ""})
				}
				return w
			}()...), wantRow{2 + maxRowLines, "", "bare \""}, wantRow{3 + maxRowLines, "auth0|2", ""}),
		},
		{
			name: "quote open past the size bound",
			input: "primary_user_id,secondary_user_id,note\nauth0|1,github|1,\"" + strings.Repeat("n", maxRowBytes) + "\n" +
				"auth0|2,github|2,\"x\"\"y\"\n",
			want: []wantRow{{2, "", "line 2, column 18: quote opened here"}, {3, "auth0|2", ""}},
		},
		{
			name:  "unclosed quotes on consecutive lines",
			input: "primary_user_id,secondary_user_id\n\"auth0|1,github|1\n\"auth0|2,github|2\nauth0|3,github|3\n",
			want:  []wantRow{{2, "", "line 2, column 1: quote opened"}, {3, "", "line 3, column 1: quote opened"}, {4, "auth0|3", ""}},
		},
		{
			name:  "invalid row then valid row",
			input: "primary_user_id,secondary_user_id\nauth0|1,foo|1\nauth0|2,github|2\n",
			want:  []wantRow{{2, "auth0|1", `secondary_user_id: provider "foo"`}, {3, "auth0|2", ""}},
		},
		{
			name:  "blank row fields",
			input: "primary_user_id,secondary_user_id\n,\nauth0|2,github|2\n",
			want:  []wantRow{{2, "", "primary_user_id: is empty"}, {3, "auth0|2", ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := readAll(t, tt.input)
			if len(rows) != len(tt.want) {
				t.Fatalf("got %d rows, want %d: %v", len(rows), len(tt.want), rows)
			}
			for i, w := range tt.want {
				row := rows[i]
				if row.Line != w.line || row.Primary != w.primary {
					t.Errorf("row %d = %v, want line %d, primary %q", i, row, w.line, w.primary)
				}
				switch {
				case w.err == "" && row.Err != nil:
					t.Errorf("row %d error = %v, want none", i, row.Err)
				case w.err != "" && (row.Err == nil || !strings.Contains(row.Err.Error(), w.err)):
					t.Errorf("row %d error = %v, want one containing %q", i, row.Err, w.err)
				}
			}
		})
	}
}

func TestReaderLinkWithNeverShown(t *testing.T) {
	input := "primary_user_id,link_with,secondary_provider,secondary_user_id\n" +
		"auth0|1," + testJWT + ",,\n" +
		"auth0|2," + testJWT + ",github,\n" +
		"auth0|3," + testJWT + ",,github|3\n" +
		"auth0|4," + testJWT + ",,,\n" + // wrong field count
		"auth0|5,\"" + testJWT + "\"x,,\n" // syntax error
	rows := readAll(t, input)
	if len(rows) != 5 {
		t.Fatalf("got %d rows, want 5", len(rows))
	}
	if rows[0].Err != nil || rows[0].LinkWith != testJWT {
		t.Errorf("row 0 = %v (err %v), want a valid link_with row", rows[0], rows[0].Err)
	}
	for _, row := range rows {
		if strings.Contains(row.String(), "eyJ") {
			t.Errorf("String() = %q shows the JWT", row)
		}
		if row.Err != nil && strings.Contains(row.Err.Error(), "eyJ") {
			t.Errorf("Err = %q shows the JWT", row.Err)
		}
	}
	for _, row := range rows[1:] {
		if row.Err == nil {
			t.Errorf("row %v is valid, want an error", row)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("primary_user_id,secondary_user_id\nauth0|1,github|2\n"))
	f.Add([]byte("\ufeffPrimary_User_Id,secondary_provider,secondary_user_id,connection_id\r\nauth0|1,samlp,acme|bob," + testConn + "\r\n\r\nauth0|1,samlp,acme|bob," + testConn + "\r\n"))
	f.Add([]byte("primary_user_id,link_with,x\nauth0|1," + testJWT + ",\"a\nb\"\nauth0|2,\"x\"y,\n\n"))
	f.Add([]byte("primary_user_id,secondary_user_id\nauth0|1,github|2\ngithub|2,auth0|1\nauth0|3,github|2\n"))
	f.Add([]byte("primary_user_id,secondary_user_id\n\"auth0|1,github|2\nauth0|3\n"))
	f.Add([]byte("primArY_user_id,link_with,\n000,a,"))
	f.Add([]byte("primary_user_id,secondary_user_id,n;o\r\nauth0|1,github|2,\"a;b\"\r\nauth0|ü,\"x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkOtherFormats(t, data)
		rd, err := NewReader(strings.NewReader(string(data)))
		_, planErr := BuildPlan(strings.NewReader(string(data)))
		if (err == nil) != (planErr == nil) {
			t.Fatalf("NewReader() error = %v but BuildPlan() error = %v", err, planErr)
		}
		if err != nil {
			return
		}
		var rows []Row
		for {
			row, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Next() error = %v from a strings.Reader", err)
			}
			if len(rows) > 0 && row.Line <= rows[len(rows)-1].Line {
				t.Fatalf("row at line %d after a row at line %d", row.Line, rows[len(rows)-1].Line)
			}
			if row.Line < 2 {
				t.Fatalf("row at line %d", row.Line)
			}
			if row.Err == nil {
				if err := row.Validate(); err != nil {
					t.Fatalf("row %v has no error but Validate() = %v", row, err)
				}
			}
			checkLinkWithHidden(t, row, row.Err)
			rows = append(rows, row)
		}
		checkPlan(t, rows, string(data))
	})
}
