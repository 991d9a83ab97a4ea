package batch

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// Errors returned by NewReader and BuildPlan for a file that cannot be read
// as linkbatch input at all.
var (
	// ErrNoHeader: the input is empty (or holds only blank lines).
	ErrNoHeader = errors.New("input has no header row")
	// ErrNoPrimaryColumn: the header has no primary_user_id column (the
	// error is a *HeaderError wrapping it, as for the two below).
	ErrNoPrimaryColumn = errors.New("header has no primary_user_id column")
	// ErrNoSecondaryColumn: the header has neither a secondary_user_id nor a
	// link_with column, so no row could name a secondary.
	ErrNoSecondaryColumn = errors.New("header has neither a secondary_user_id nor a link_with column")
	// ErrDuplicateColumn: a known column appears twice in the header.
	ErrDuplicateColumn = errors.New("header names a column twice")
)

// utf8BOM is the byte order mark that some spreadsheets write first.
const utf8BOM = "\ufeff"

// Reader reads the rows of a linkbatch input file one at a time, through
// an encoding/csv reader of its own, mapping the header's columns to Row's
// fields by name. It holds one row in memory at a time.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	csv      *csv.Reader
	cols     [5]int // the record index of each of knownColumns; -1 if absent
	split    *splitter
	ahead    Row // a row read while rows refused before it were still due
	hasAhead bool
	err      error // sticky: io.EOF or the I/O error that ended reading
	enc      string
	delim    rune
	// unchecked makes Next return the rows it parsed unchecked, for a
	// caller that checks them (Row.Check) in another goroutine: a
	// one-pass run (see readBatches).
	unchecked bool
}

// NewReader reads and checks the header of the input r, in the default
// Format (see Format.NewReader).
func NewReader(r io.Reader) (*Reader, error) { return Format{}.NewReader(r) }

// NewReader reads and checks the header of the input r. Columns are matched
// by name (or by the names f.Columns gives them), trimmed and
// case-insensitively, in any order; unknown columns are ignored. The input
// may be UTF-8, with or without a byte order mark, or UTF-16 with a byte
// order mark (Excel's "Unicode text"), with CRLF or LF line ends. Its
// delimiter is f.Delimiter, or, when that is zero, ',' unless only ';' or
// only a tab splits the header into the columns linkbatch needs.
//
// It returns f.Validate's error for a Format that cannot be used; a
// *HeaderError wrapping ErrNoPrimaryColumn, ErrNoSecondaryColumn,
// ErrDuplicateColumn or ErrMappedColumnMissing for a header that does not
// do, which shows the header read, the likely cause and the fix;
// ErrNoHeader for an empty input; and an error wrapping the reader's for a
// header that cannot be read or parsed.
func (f Format) NewReader(r io.Reader) (*Reader, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	enc := "UTF-8"
	start, _ := br.Peek(len(utf8BOM)) // an error comes again on the next read
	switch {
	case bytes.HasPrefix(start, []byte(utf8BOM)):
		_, _ = br.Discard(len(utf8BOM)) // cannot fail: the bytes are buffered
	case bytes.HasPrefix(start, []byte{0xff, 0xfe}), bytes.HasPrefix(start, []byte{0xfe, 0xff}):
		enc = "UTF-16LE"
		if start[0] == 0xfe {
			enc = "UTF-16BE"
		}
		// The decoder takes its byte order from the mark, and drops it.
		dec := unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder()
		br = bufio.NewReaderSize(transform.NewReader(br, dec), 64<<10)
	}
	line := peekHeader(br)
	delim := f.Delimiter
	if delim == 0 {
		delim = detectDelimiter(line, f.Columns)
	}
	split := &splitter{src: br, comma: byte(delim)}
	cr := csv.NewReader(split)
	cr.Comma = delim
	cr.ReuseRecord = true
	raw, err := cr.Read()
	headerLine := 0
	if err == nil {
		headerLine, _ = cr.FieldPos(0)
	}
	if u, ok := split.takeUnclosed(headerLine); ok {
		return nil, fmt.Errorf("read header: %w", u.err())
	}
	if errors.Is(err, io.EOF) {
		return nil, ErrNoHeader
	}
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	names, err := mapHeaderNames(raw, f.Columns)
	if err != nil {
		return nil, diagnose(err, line, slices.Clone(raw), enc, delim, f)
	}
	rd := &Reader{csv: cr, split: split, enc: enc, delim: delim}
	for i := range rd.cols {
		rd.cols[i] = -1
	}
	for i, name := range names {
		if c := slices.Index(knownColumns, name); c >= 0 {
			rd.cols[c] = i
		}
	}
	cr.FieldsPerRecord = len(raw)
	return rd, nil
}

// peekHeader returns the input's first line that is not empty, without its
// line end, leaving it in br; it waits only for the bytes of that line (an
// input on a pipe may come slowly), and returns at most br's buffer.
func peekHeader(br *bufio.Reader) []byte {
	for n := 1; ; n = br.Buffered() + 1 {
		_, err := br.Peek(n)
		all, _ := br.Peek(br.Buffered()) // cannot fail: the bytes are buffered
		rest := all
		for {
			if t, ok := bytes.CutPrefix(rest, []byte("\n")); ok {
				rest = t
			} else if t, ok := bytes.CutPrefix(rest, []byte("\r\n")); ok {
				rest = t
			} else {
				break
			}
		}
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			return bytes.TrimSuffix(rest[:i], []byte("\r"))
		}
		if err != nil || br.Buffered() >= br.Size() {
			return rest
		}
	}
}

// bytesRead returns about how many bytes of the input (as decoded) were
// read so far: those of the lines parsed, and some of those held.
func (r *Reader) bytesRead() int64 { return r.split.read }

// Encoding returns the input's encoding as read: "UTF-8", "UTF-16LE" or
// "UTF-16BE".
func (r *Reader) Encoding() string { return r.enc }

// Delimiter returns the delimiter the input is read with.
func (r *Reader) Delimiter() rune { return r.delim }

// knownColumns are the columns a Reader fills, in the order of
// Reader.cols.
var knownColumns = []string{colPrimary, colSecondary, colSecondaryProvider, colConnectionID, colLinkWith}

// mapHeaderNames returns the canonical column of each header name, "" for
// an unknown one; with the first problem found, the names mapped so far.
func mapHeaderNames(raw []string, columns map[string]string) ([]string, error) {
	known := knownColumns
	byName := make(map[string]string, len(known)+len(columns))
	for _, c := range known {
		byName[c] = c
	}
	for col, name := range columns {
		byName[strings.ToLower(strings.TrimSpace(name))] = col
	}
	out := make([]string, len(raw))
	seen := make(map[string]bool, len(known))
	for i, h := range raw {
		col, ok := byName[strings.ToLower(strings.TrimSpace(h))]
		if !ok {
			continue
		}
		if seen[col] {
			return out, fmt.Errorf("%w: %s", ErrDuplicateColumn, col)
		}
		seen[col] = true
		out[i] = col
	}
	for _, c := range known {
		if name, ok := columns[c]; ok && !slices.ContainsFunc(raw, func(h string) bool {
			return strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(name))
		}) {
			return out, fmt.Errorf("%w: %s (for %s)", ErrMappedColumnMissing, quote(strings.TrimSpace(name)), c)
		}
	}
	switch {
	case !seen[colPrimary]:
		return out, ErrNoPrimaryColumn
	case !seen[colSecondary] && !seen[colLinkWith]:
		return out, ErrNoSecondaryColumn
	}
	return out, nil
}

// Next returns the next data row, or io.EOF after the last one.
//
// Problems of a single row do not stop reading: a row the CSV parser
// rejects (a stray quote, a wrong number of fields) comes back with Err set
// to the parser's *csv.ParseError and no fields, and a row that fails
// Validate with Err set to its *FieldError. A quoted field may span at most
// 16 lines and 64 KiB: a quote still open after that, or at the end of the
// input, makes its row come back with a *csv.ParseError wrapping
// ErrUnclosedQuote at the line and column of the quote, and reading resumes
// on the next line. So every line of the input is either blank, the header,
// or part of exactly one row. Row.Line is the physical line where the row
// starts (the header is line 1). Every row returned is checked (Row.Check).
// The error result is only for what ends reading: io.EOF, or the input's
// I/O error as it is (the caller says which input); a line or row cut
// short by that error is never returned. Next keeps returning it afterwards.
func (r *Reader) Next() (Row, error) {
	var row Row
	err := r.next(&row)
	return row, err
}

// next is Next into row, which it leaves alone when it returns an error:
// a row is written once rather than copied on its way.
func (r *Reader) next(row *Row) error {
	if !r.hasAhead && r.err == nil {
		if err := r.read(&r.ahead); err != nil {
			r.err = err
		} else {
			r.hasAhead = true // r.ahead by value: no allocation per row
		}
	}
	before := 0 // any line, once reading ended
	if r.hasAhead {
		before = r.ahead.Line
	}
	if u, ok := r.split.takeUnclosed(before); ok {
		*row = Row{Line: u.line, Err: u.err()}.Check()
		return nil
	}
	if r.hasAhead {
		*row = r.ahead
		r.ahead, r.hasAhead = Row{}, false
		return nil
	}
	return r.err
}

// read reads the parser's next row into row, or returns what ends reading
// (leaving row alone).
func (r *Reader) read(row *Row) error {
	rec, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && isSyntaxError(pe.Err) {
			*row = Row{Line: pe.StartLine, Err: pe}.Check()
			return nil
		}
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err // the caller names the input
	}
	// The fields share one string per record (encoding/csv's), which
	// ReuseRecord does not reuse: only the slice is.
	field := func(c int) string {
		if i := r.cols[c]; i >= 0 {
			return rec[i]
		}
		return ""
	}
	*row = Row{Primary: field(0), Secondary: field(1), SecondaryProvider: field(2), ConnectionID: field(3), LinkWith: field(4)}
	row.Line, _ = r.csv.FieldPos(0)
	if !r.unchecked {
		row.check()
	}
	return nil
}

// isSyntaxError reports whether err is one of the per-record errors of
// encoding/csv, after which the next record can still be read.
func isSyntaxError(err error) bool {
	return errors.Is(err, csv.ErrBareQuote) || errors.Is(err, csv.ErrQuote) || errors.Is(err, csv.ErrFieldCount)
}
