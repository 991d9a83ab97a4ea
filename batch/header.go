package batch

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ErrMappedColumnMissing: the column mapping (Format.Columns) names a
// header name that the header does not have.
var ErrMappedColumnMissing = errors.New("header lacks a column the column mapping names")

// HeaderError is the error of NewReader and BuildPlan for a header that
// does not name the columns linkbatch needs. Besides what is wrong (Err:
// ErrNoPrimaryColumn, ErrNoSecondaryColumn, ErrDuplicateColumn or
// ErrMappedColumnMissing, which errors.Is finds), it holds the header as
// it was read, what likely caused the mismatch, and how to fix it.
type HeaderError struct {
	Err       error
	Header    []string // the header's names as read
	Encoding  string   // "UTF-8", "UTF-16LE" or "UTF-16BE"
	Delimiter rune     // the delimiter the header was split on
	Causes    []string // the likely causes found, if any
	Fix       string   // what to do
}

// Error returns a single line: what is wrong, the header read, the likely
// causes and the fix.
func (e *HeaderError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	fmt.Fprintf(&b, "; the header read (%s, split on %s) has %d %s: %s", e.Encoding, delimName(e.Delimiter),
		len(e.Header), pluralWord(len(e.Header), "column", "columns"), showHeader(e.Header))
	if len(e.Causes) > 0 {
		b.WriteString("; likely cause: " + strings.Join(e.Causes, "; "))
	}
	if e.Fix != "" {
		b.WriteString("; to fix it: " + e.Fix)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *HeaderError) Unwrap() error { return e.Err }

// showHeader lists at most 12 names, each quoted and shortened.
func showHeader(h []string) string {
	const most = 12
	parts := make([]string, 0, min(len(h), most)+1)
	for i, name := range h {
		if i == most {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(h)-most))
			break
		}
		parts = append(parts, quote(name))
	}
	return strings.Join(parts, ", ")
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// delimName names a delimiter for a message: ',' (comma) and the like.
func delimName(d rune) string {
	switch d {
	case ',':
		return "',' (comma)"
	case ';':
		return "';' (semicolon)"
	case '\t':
		return "tab"
	case '|':
		return "'|' (pipe)"
	}
	return strconv.QuoteRune(d)
}

// delimFlag writes a delimiter as a --delimiter value.
func delimFlag(d rune) string {
	if d == '\t' {
		return "tab"
	}
	return "'" + string(d) + "'"
}

// splitHeader splits one header line on delim as encoding/csv would, or
// returns nil when it does not parse.
func splitHeader(line []byte, delim rune) []string {
	cr := csv.NewReader(bytes.NewReader(line))
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	rec, err := cr.Read()
	if err != nil {
		return nil
	}
	return rec
}

// detectDelimiter returns the delimiter of a header line: ',' when it
// gives the columns linkbatch needs, else ';' or a tab when exactly one of
// them does, else ','.
func detectDelimiter(line []byte, columns map[string]string) rune {
	works := func(d rune) bool {
		h := splitHeader(line, d)
		if h == nil {
			return false
		}
		_, err := mapHeaderNames(h, columns)
		return err == nil
	}
	if works(',') {
		return ','
	}
	semicolon, tab := works(';'), works('\t')
	switch {
	case semicolon && !tab:
		return ';'
	case tab && !semicolon:
		return '\t'
	}
	return ','
}

// normName reduces a header name to its lower-case letters and digits, to
// find near misses: "Primary User ID" and "primary-user-id" both give
// "primaryuserid".
func normName(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// nearMiss returns the first name of h that looks meant for col.
func nearMiss(h []string, col string, taken map[int]bool) (int, bool) {
	var keys []string
	switch col {
	case colPrimary:
		keys = []string{"primary"}
	case colSecondary:
		keys = []string{"secondary", "linkwith"}
	default:
		return 0, false
	}
	for i, name := range h {
		n := normName(name)
		if taken[i] || n == "" {
			continue
		}
		for _, k := range keys {
			if strings.Contains(n, k) {
				return i, true
			}
		}
	}
	return 0, false
}

// diagnose builds the HeaderError of a header that mapHeader refused with
// err: it looks for a UTF-16 file without a byte order mark, another
// delimiter, a missing header line and near-miss names.
func diagnose(err error, line []byte, header []string, enc string, delim rune, f Format) error {
	e := &HeaderError{Err: err, Header: header, Encoding: enc, Delimiter: delim}
	if errors.Is(err, ErrDuplicateColumn) {
		e.Fix = "keep one column of each name, or name the one to use with --columns"
		return e
	}
	if errors.Is(err, ErrMappedColumnMissing) {
		e.Fix = "give --columns the names exactly as the header has them (case and surrounding spaces do not matter)"
		return e
	}
	if bytes.IndexByte(line, 0) >= 0 {
		e.Causes = append(e.Causes, "the file looks like UTF-16 without a byte-order mark (its text is interleaved with zero bytes)")
		e.Fix = "save it as CSV UTF-8, or as UTF-16 with its byte-order mark (Excel's \"Unicode text\" has one)"
		return e
	}
	if looksLikeData(header) {
		e.Causes = append(e.Causes, "the first line looks like data, not a header: the file has no header line")
		e.Fix = "add a first line naming the columns, e.g. primary_user_id" + string(delim) + "secondary_user_id"
		return e
	}
	// Another delimiter splits the header into more names ('|' is not
	// tried: user ids hold it).
	fields, useDelim := header, delim
	if f.Delimiter == 0 {
		for _, d := range []rune{';', '\t'} {
			if d == delim {
				continue
			}
			if h := splitHeader(line, d); len(h) > len(fields) && len(h) >= 2 {
				fields, useDelim = h, d
			}
		}
	}
	var fixes []string
	if useDelim != delim {
		e.Causes = append(e.Causes, fmt.Sprintf("the columns look separated by %s, not %s", delimName(useDelim), delimName(delim)))
		fixes = append(fixes, "--delimiter "+delimFlag(useDelim))
	}
	// Near misses, for the columns the header lacks.
	mapped, _ := mapHeaderNames(fields, f.Columns)
	taken := map[int]bool{}
	for i, name := range mapped {
		if name != "" {
			taken[i] = true
		}
	}
	has := func(col string) bool { return slices.Contains(mapped, col) }
	columns := maps.Clone(f.Columns)
	if columns == nil {
		columns = map[string]string{}
	}
	var looks []string
	for _, col := range []string{colPrimary, colSecondary} {
		if has(col) || (col == colSecondary && has(colLinkWith)) {
			continue
		}
		if i, ok := nearMiss(fields, col, taken); ok {
			taken[i] = true
			looks = append(looks, fmt.Sprintf("column %s looks meant as %s", quote(fields[i]), col))
			columns[col] = strings.TrimSpace(fields[i])
		}
	}
	if len(looks) > 0 {
		e.Causes = append(e.Causes, strings.Join(looks, " and "))
		fixes = append(fixes, "--columns "+columnsFlag(columns))
	}
	switch {
	case len(fixes) > 0 && len(looks) > 0:
		e.Fix = "rename the columns in the header to primary_user_id and secondary_user_id, or run with " + strings.Join(fixes, " ")
	case len(fixes) > 0:
		e.Fix = "save the file with commas, or run with " + strings.Join(fixes, " ")
	default:
		e.Fix = "the first line must name the columns: primary_user_id and secondary_user_id (or link_with), optionally secondary_provider and connection_id; map other names with --columns primary=NAME,secondary=NAME (see linkbatch run --help)"
	}
	return e
}

// columnsFlag writes a mapping as a --columns value, quoted for a shell.
func columnsFlag(m map[string]string) string {
	var parts []string
	for _, c := range Columns {
		if name, ok := m[c.Name]; ok {
			parts = append(parts, c.Alias+"="+name)
		}
	}
	return "'" + strings.ReplaceAll(strings.Join(parts, ","), "'", `'\''`) + "'"
}

// looksLikeData reports whether a header's names look like user ids: a
// file saved without its header line.
func looksLikeData(h []string) bool {
	ids := 0
	for _, name := range h {
		if p, rest, ok := strings.Cut(strings.TrimSpace(name), "|"); ok && p != "" && rest != "" && !strings.Contains(name, " ") {
			ids++
		}
	}
	return ids >= 2 || (ids == 1 && len(h) == 1)
}
