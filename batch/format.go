package batch

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Format says how to read an input file where the defaults do not do: the
// delimiter between its columns and the names its header gives to
// linkbatch's columns. The zero Format reads the default layout, detecting
// a ';' or tab delimiter (see NewReader). A Format is a value: it is safe
// to share between goroutines.
type Format struct {
	// Delimiter separates the columns: ',', ';', '\t' or '|'. Zero detects
	// it from the header: ',' unless only ';' or only a tab gives a header
	// with the columns linkbatch needs.
	Delimiter rune
	// Columns maps a column of linkbatch (primary_user_id,
	// secondary_user_id, secondary_provider, connection_id, link_with) to
	// the name the file's header gives it, as ParseColumns returns. The
	// names are matched trimmed and case-insensitively, like the defaults.
	Columns map[string]string
}

// Delimiters are the column delimiters a Format may name.
var Delimiters = []rune{',', ';', '\t', '|'}

// Columns lists linkbatch's input columns, in the order the help shows
// them, with what each holds.
var Columns = []struct{ Name, Alias, Help string }{
	{colPrimary, "primary", "the user that stays: \"provider|user_id\" (required)"},
	{colSecondary, "secondary", "the user merged into it: \"provider|user_id\", or its bare user_id with secondary_provider"},
	{colSecondaryProvider, "provider", "the secondary's provider, when secondary_user_id is a bare user_id"},
	{colConnectionID, "connection", "the secondary's connection (con_ and 16 letters or digits), optional"},
	{colLinkWith, "link_with", "the secondary's ID token (a JWT), instead of secondary_user_id"},
}

// ErrBadColumns is wrapped by ParseColumns' errors.
var ErrBadColumns = errors.New("bad column mapping")

// ParseColumns parses a column mapping "primary=Primary User ID,
// secondary=Secondary User ID": comma-separated pairs of a linkbatch column
// (its name or its short alias: primary, secondary, provider, connection,
// link_with) and the header name that holds it (which cannot contain a
// comma). It returns the mapping keyed by column name, or an error wrapping
// ErrBadColumns that names the pair at fault.
func ParseColumns(s string) (map[string]string, error) {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		key, name, ok := strings.Cut(pair, "=")
		key, name = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(name)
		col := columnByName(key)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %s: want COLUMN=HEADER NAME", ErrBadColumns, quote(pair))
		case col == "":
			return nil, fmt.Errorf("%w: %s is not a column (want one of primary, secondary, provider, connection, link_with)", ErrBadColumns, quote(key))
		case name == "":
			return nil, fmt.Errorf("%w: %s maps to an empty name", ErrBadColumns, quote(key))
		case out[col] != "":
			return nil, fmt.Errorf("%w: %s is mapped twice", ErrBadColumns, col)
		}
		out[col] = name
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no COLUMN=HEADER NAME pair", ErrBadColumns)
	}
	return out, nil
}

// ParseDelimiter parses a delimiter as given on a command line: one of
// , ; | or a tab, or the words comma, semicolon, tab, pipe, or "\t".
func ParseDelimiter(s string) (rune, error) {
	switch strings.ToLower(s) {
	case ",", "comma":
		return ',', nil
	case ";", "semicolon":
		return ';', nil
	case "\t", `\t`, "tab":
		return '\t', nil
	case "|", "pipe":
		return '|', nil
	}
	return 0, fmt.Errorf("delimiter %s: want one of , ; | tab", quote(s))
}

// columnByName returns the column a name or alias stands for, or "".
func columnByName(key string) string {
	for _, c := range Columns {
		if key == c.Name || key == c.Alias {
			return c.Name
		}
	}
	return ""
}

// Validate reports a Delimiter or Columns that cannot be used.
func (f Format) Validate() error {
	if f.Delimiter != 0 && !slices.Contains(Delimiters, f.Delimiter) {
		return fmt.Errorf("delimiter %q: want one of , ; | tab", f.Delimiter)
	}
	for col, name := range f.Columns {
		if columnByName(col) != col {
			return fmt.Errorf("%w: %s is not a column", ErrBadColumns, quote(col))
		}
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, "\r\n") || !utf8.ValidString(name) {
			return fmt.Errorf("%w: %s maps to %s", ErrBadColumns, col, quote(name))
		}
	}
	return nil
}

// OpenCSV is OpenCSV reading the input in this Format.
func (f Format) OpenCSV(open func() (io.ReadCloser, error)) (*CSVSource, error) {
	in, err := open()
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	rd, err := f.NewReader(in)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("read input: %w", err)
	}
	return &CSVSource{in: in, rd: rd}, nil
}

// ReadPlan is ReadPlan reading the input in this Format.
func (f Format) ReadPlan(open func() (io.ReadCloser, error)) (*Plan, error) {
	in, err := open()
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	defer in.Close()
	plan, err := f.BuildPlan(in)
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	return plan, nil
}
