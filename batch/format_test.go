package batch

import (
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// readAllFormat reads every row of input in format f, failing the test on
// a structural or I/O error, and checks that the plan reads as many rows.
func readAllFormat(t testing.TB, f Format, input string) (*Reader, []Row) {
	t.Helper()
	rd, err := f.NewReader(strings.NewReader(input))
	if err != nil {
		t.Fatalf("NewReader() error = %v", err)
	}
	var rows []Row
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		rows = append(rows, row)
	}
	p, err := f.BuildPlan(strings.NewReader(input))
	if err != nil {
		t.Fatalf("BuildPlan() error = %v", err)
	}
	if p.Rows() != len(rows) {
		t.Fatalf("plan has %d rows, the reader %d", p.Rows(), len(rows))
	}
	return rd, rows
}

// utf16Text encodes s as UTF-16 with a byte order mark.
func utf16Text(s string, bigEndian bool) string {
	units := utf16.Encode([]rune("\ufeff" + s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		if bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// sameRows compares rows by line, fields and error text.
func sameRows(t *testing.T, got, want []Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		ge, we := "", ""
		if g.Err != nil {
			ge = g.Err.Error()
		}
		if w.Err != nil {
			we = w.Err.Error()
		}
		g.Err, w.Err = nil, nil
		if g != w || ge != we {
			t.Fatalf("row %d = %#v (%s), want %#v (%s)", i, g, ge, w, we)
		}
	}
}

const utf8Input = "primary_user_id,secondary_user_id,note\r\n" +
	"auth0|1,github|2,\"Zoë, \"\"quoted\"\"\"\r\n" +
	"\r\n" +
	"auth0|3,\"samlp|acme|jörg\",\"two\nlines\"\r\n" +
	"auth0|4,foo|5,\r\n" +
	"auth0|6,\"github|7,x\r\n" +
	"auth0|8,google-oauth2|9,\r\n"

func TestReaderUTF16(t *testing.T) {
	_, want := readAllFormat(t, Format{}, utf8Input)
	if len(want) != 5 {
		t.Fatalf("the UTF-8 input has %d rows, want 5", len(want))
	}
	for _, be := range []bool{false, true} {
		name := map[bool]string{false: "UTF-16LE", true: "UTF-16BE"}[be]
		t.Run(name, func(t *testing.T) {
			rd, got := readAllFormat(t, Format{}, utf16Text(utf8Input, be))
			sameRows(t, got, want)
			if rd.Encoding() != name {
				t.Errorf("Encoding() = %q, want %q", rd.Encoding(), name)
			}
		})
	}
}

func TestReaderDelimiters(t *testing.T) {
	_, want := readAllFormat(t, Format{}, utf8Input)
	tests := []struct {
		name   string
		format Format
		delim  rune
	}{
		{"semicolon, detected", Format{}, ';'},
		{"tab, detected", Format{}, '\t'},
		{"semicolon, given", Format{Delimiter: ';'}, ';'},
		{"pipe, given", Format{Delimiter: '|'}, '|'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := utf8Input
			if tt.delim == '|' {
				// user ids hold '|': every field is quoted
				in = strings.NewReplacer("auth0|", "auth0#").Replace(in)
			}
			in = strings.ReplaceAll(in, ",", string(tt.delim))
			in = strings.ReplaceAll(in, "Zoë"+string(tt.delim), "Zoë,") // the comma inside a quoted field stays
			in = strings.ReplaceAll(in, "github|7"+string(tt.delim)+"x", "github|7,x")
			rd, got := readAllFormat(t, tt.format, in)
			if rd.Delimiter() != tt.delim {
				t.Errorf("Delimiter() = %q, want %q", rd.Delimiter(), tt.delim)
			}
			if tt.delim == '|' {
				if len(got) != len(want) {
					t.Fatalf("got %d rows, want %d", len(got), len(want))
				}
				return
			}
			sameRows(t, got, want)
		})
	}
	t.Run("semicolon in UTF-16", func(t *testing.T) {
		in := "primary_user_id;secondary_user_id\nauth0|1;github|2\n"
		_, got := readAllFormat(t, Format{}, utf16Text(in, false))
		if len(got) != 1 || got[0].Err != nil || got[0].Secondary != "github|2" {
			t.Fatalf("rows = %v", got)
		}
	})
	t.Run("comma wins when it gives the columns", func(t *testing.T) {
		rd, got := readAllFormat(t, Format{}, "primary_user_id,secondary_user_id,a;b\nauth0|1,github|2,x;y\n")
		if rd.Delimiter() != ',' || len(got) != 1 || got[0].Err != nil {
			t.Fatalf("Delimiter() = %q, rows = %v", rd.Delimiter(), got)
		}
	})
}

func TestParseColumns(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		err  string
	}{
		{"primary=Primary User ID,secondary=Secondary User ID", map[string]string{colPrimary: "Primary User ID", colSecondary: "Secondary User ID"}, ""},
		{" primary_user_id = main , provider=idp,connection=conn,link_with=token,", map[string]string{colPrimary: "main", colSecondaryProvider: "idp", colConnectionID: "conn", colLinkWith: "token"}, ""},
		{"primary", nil, "want COLUMN=HEADER NAME"},
		{"email=x", nil, `"email" is not a column`},
		{"primary=", nil, "maps to an empty name"},
		{"primary=a,primary_user_id=b", nil, "mapped twice"},
		{"", nil, "no COLUMN=HEADER NAME pair"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseColumns(tt.in)
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrBadColumns) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseColumns() error = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("ParseColumns() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestReaderColumnMapping(t *testing.T) {
	cols, err := ParseColumns("primary=Primary User ID,secondary=Secondary User ID,provider=IdP")
	if err != nil {
		t.Fatal(err)
	}
	in := "Email,primary user id,Secondary User ID,idp\n" +
		"a@b.c,auth0|1,1077,google-oauth2\n" +
		"a@b.c,auth0|1,1077,google-oauth2\n"
	_, rows := readAllFormat(t, Format{Columns: cols}, in)
	want := Row{Line: 2, Primary: "auth0|1", Secondary: "1077", SecondaryProvider: "google-oauth2"}.Check()
	if len(rows) != 2 || rows[0] != want {
		t.Fatalf("rows = %#v, want [%#v, …]", rows, want)
	}
	p, err := Format{Columns: cols}.BuildPlan(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Verdict(3); !ok || v.Status != StatusSkipped {
		t.Errorf("Verdict(3) = %+v, %v; want the repeat skipped", v, ok)
	}

	// A mapped name the header lacks, and a mapped column that is also
	// there under its own name.
	_, err = Format{Columns: map[string]string{colPrimary: "Main"}}.NewReader(strings.NewReader("primary,secondary_user_id\n"))
	if !errors.Is(err, ErrMappedColumnMissing) || !strings.Contains(err.Error(), `"Main"`) {
		t.Errorf("NewReader() error = %v, want ErrMappedColumnMissing naming \"Main\"", err)
	}
	_, err = Format{Columns: map[string]string{colPrimary: "Main"}}.NewReader(strings.NewReader("main,primary_user_id,secondary_user_id\n"))
	if !errors.Is(err, ErrDuplicateColumn) {
		t.Errorf("NewReader() error = %v, want ErrDuplicateColumn", err)
	}
}

// TestReaderWrongFileMessages: a file that cannot be read as input gets a
// message that shows the header read, names the likely cause and says how
// to fix it; BuildPlan says the same.
func TestReaderWrongFileMessages(t *testing.T) {
	utf16NoBOM := utf16Text("primary_user_id,secondary_user_id\nauth0|1,github|2\n", false)[2:]
	tests := []struct {
		name   string
		format Format
		input  string
		want   error
		says   []string
	}{
		{"UTF-16 without a byte order mark", Format{}, utf16NoBOM, ErrNoPrimaryColumn,
			[]string{"the header read (UTF-8", "UTF-16 without a byte-order mark", "save it as CSV UTF-8"}},
		{"short names", Format{}, "primary,secondary\nauth0|1,github|2\n", ErrNoPrimaryColumn,
			[]string{`2 columns: "primary", "secondary"`, `column "primary" looks meant as primary_user_id and column "secondary" looks meant as secondary_user_id`,
				"--columns 'primary=primary,secondary=secondary'"}},
		{"spreadsheet names", Format{}, "Primary User ID,Secondary User ID\n", ErrNoPrimaryColumn,
			[]string{`"Primary User ID", "Secondary User ID"`, `column "Primary User ID" looks meant as primary_user_id`,
				"rename the columns in the header", "--columns 'primary=Primary User ID,secondary=Secondary User ID'"}},
		{"semicolons and spreadsheet names", Format{}, "Primary User ID;Secondary User ID\n", ErrNoPrimaryColumn,
			[]string{`split on ',' (comma)) has 1 column: "Primary User ID;Secondary User ID"`,
				"the columns look separated by ';' (semicolon), not ','", "--delimiter ';' --columns 'primary=Primary User ID,secondary=Secondary User ID'"}},
		{"tabs and a missing secondary", Format{}, "primary_user_id\tuser\n", ErrNoPrimaryColumn,
			[]string{"separated by tab, not ','", "save the file with commas, or run with --delimiter tab"}},
		{"semicolon given, commas in the file", Format{Delimiter: ';'}, "primary,secondary\n", ErrNoPrimaryColumn,
			[]string{`split on ';' (semicolon)) has 1 column: "primary,secondary"`, "rename the columns"}},
		{"secondary only missing", Format{}, "primary_user_id,secondary\n", ErrNoSecondaryColumn,
			[]string{`column "secondary" looks meant as secondary_user_id`, "--columns 'secondary=secondary'"}},
		{"no header line", Format{}, "auth0|1,github|2\nauth0|3,github|4\n", ErrNoPrimaryColumn,
			[]string{"looks like data, not a header", "add a first line naming the columns"}},
		{"nothing recognisable", Format{}, "a,b\n", ErrNoPrimaryColumn,
			[]string{`2 columns: "a", "b"`, "the first line must name the columns", "--columns primary=NAME"}},
		{"column twice", Format{}, "primary_user_id,secondary_user_id,Primary_User_Id\n", ErrDuplicateColumn,
			[]string{"keep one column of each name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.format.NewReader(strings.NewReader(tt.input))
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewReader() error = %v, want %v", err, tt.want)
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("NewReader() error = %v, want a *HeaderError", err)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q:\n%v", s, err)
				}
			}
			if strings.ContainsAny(err.Error(), "\n\r\x00") {
				t.Errorf("error is not one clean line: %q", err)
			}
			if _, perr := tt.format.BuildPlan(strings.NewReader(tt.input)); perr == nil || perr.Error() != err.Error() {
				t.Errorf("BuildPlan() error = %v, want %v", perr, err)
			}
		})
	}
}

// checkOtherFormats reads data, as FuzzReader does, then again in UTF-16
// and again with ',' and ';' swapped and read with Delimiter ';': the rows,
// their lines and the plan's verdicts must be the same.
func checkOtherFormats(t *testing.T, data []byte) {
	t.Helper()
	base, baseRows, baseErr := readRowsAndPlan(Format{}, string(data))
	swap := func(s string) string { // byte by byte: s may not be UTF-8
		b := []byte(s)
		for i, c := range b {
			switch c {
			case ',':
				b[i] = ';'
			case ';':
				b[i] = ','
			}
		}
		return string(b)
	}
	variants := map[string]struct {
		f     Format
		input string
		back  func(string) string
	}{
		"semicolon": {Format{Delimiter: ';'}, swap(string(data)), swap},
	}
	if utf8.Valid(data) && !strings.HasPrefix(string(data), utf8BOM) {
		variants["UTF-16"] = struct {
			f     Format
			input string
			back  func(string) string
		}{Format{Delimiter: ','}, utf16Text(string(data), false), func(s string) string { return s }}
	}
	for name, v := range variants {
		p, rows, err := readRowsAndPlan(v.f, v.input)
		if (err == nil) != (baseErr == nil) {
			t.Fatalf("%s: error = %v, but %v in UTF-8 with commas", name, err, baseErr)
		}
		if err != nil {
			continue
		}
		if len(rows) != len(baseRows) {
			t.Fatalf("%s: %d rows, but %d in UTF-8 with commas", name, len(rows), len(baseRows))
		}
		for i, row := range rows {
			b := baseRows[i]
			if row.Line != b.Line || (row.Err == nil) != (b.Err == nil) ||
				v.back(row.Primary) != b.Primary || v.back(row.Secondary) != b.Secondary || v.back(row.LinkWith) != b.LinkWith {
				t.Fatalf("%s: row %d = %#v (%v), but %#v (%v) in UTF-8 with commas", name, i, row, row.Err, b, b.Err)
			}
			gv, gok := p.Verdict(row.Line)
			bv, bok := base.Verdict(row.Line)
			if gok != bok || gv.Status != bv.Status || gv.Other != bv.Other {
				t.Fatalf("%s: Verdict(%d) = %+v, %v; but %+v, %v in UTF-8 with commas", name, row.Line, gv, gok, bv, bok)
			}
		}
	}
}

// readRowsAndPlan reads every row of input and builds its plan, in f.
func readRowsAndPlan(f Format, input string) (*Plan, []Row, error) {
	rd, err := f.NewReader(strings.NewReader(input))
	if err != nil {
		return nil, nil, err
	}
	var rows []Row
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, row)
	}
	p, err := f.BuildPlan(strings.NewReader(input))
	return p, rows, err
}
