package batch

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// Bounds on a row that spans lines. A user id never holds a line break, but
// an unknown column (a note exported from a spreadsheet) may, so a quoted
// field may run over a few lines; a quote still open after maxRowLines
// lines or maxRowBytes bytes, or at the end of the input, was never meant
// to span lines: it is an unclosed quote, not a field.
const (
	maxRowLines = 16
	maxRowBytes = 64 << 10
)

// maxLineBytes bounds one line of the input. No row of pairs comes near it
// (an id is at most 2,048 bytes); a longer line (a file that is no CSV of
// pairs, a blob pasted into a cell) is refused as a row without being held
// in memory, and reading resumes on the next line.
const maxLineBytes = 1 << 20

// ErrLineTooLong is the Err of the *csv.ParseError given for a line longer
// than maxLineBytes.
var ErrLineTooLong = fmt.Errorf("line longer than %d MiB; the row is refused and reading resumes on the next line", maxLineBytes>>20)

// ErrUnclosedQuote is the Err of the *csv.ParseError given for a row whose
// quoted field is still open after maxRowLines lines, maxRowBytes bytes or
// at the end of the input, or that spans lines and ends in a quote error. The row is refused and reading resumes on the
// line after the one where the quote opened, so the rows below it are read.
var ErrUnclosedQuote = fmt.Errorf("quote opened here does not close its field within %d lines (%d KiB) nor by the end of the input; the row is refused and reading resumes on the next line",
	maxRowLines, maxRowBytes>>10)

// unclosed is a row refused for an unclosed quote, or for a line too long.
type unclosed struct {
	line, col int
	long      bool
}

func (u unclosed) err() error {
	if u.long {
		return &csv.ParseError{StartLine: u.line, Line: u.line, Column: 1, Err: ErrLineTooLong}
	}
	return &csv.ParseError{StartLine: u.line, Line: u.line, Column: u.col, Err: ErrUnclosedQuote}
}

// held is a line read and held back, to be taken again.
type held struct {
	b    []byte
	long bool // a line longer than maxLineBytes, of which b holds only the line end
}

// splitter passes its source on to the CSV parser, a whole row at a time,
// after finding where each row ends the way encoding/csv does (separated
// by comma, an ASCII delimiter, no lazy quotes, no comments). A row whose quote is never
// closed within the bounds is replaced by an empty line (so the parser's
// line count stays right), queued in unclosed, and the lines after its
// first are read again as new rows. A line longer than maxLineBytes is
// refused likewise, read to its end without being held. Only whole lines are passed on: when
// the source fails with an error other than io.EOF, a partial line or row
// read before it is dropped and the error returned.
type splitter struct {
	src      *bufio.Reader
	comma    byte   // the delimiter; 0 means ','
	stops    string // comma and quote, for bytes.IndexAny
	line     int    // physical lines taken so far
	back     []held // lines to take again before reading src
	long     []byte // a line longer than src's buffer
	out      []byte // bytes ready for Read, from off
	off      int
	err      error      // sticky: what ended the source
	unclosed []unclosed // rows refused for an unclosed quote, by line
	read     int64      // bytes of the lines read from src, about
}

// Read implements io.Reader.
func (s *splitter) Read(p []byte) (int, error) {
	if s.off > 0 && len(s.out)-s.off < len(p) {
		// Before filling, move what is left (less than p) to the front, so
		// that out holds at most one Read's worth and a row, not every
		// byte read so far; a long row is passed on without being moved.
		s.out = s.out[:copy(s.out, s.out[s.off:])]
		s.off = 0
	}
	for len(s.out)-s.off < len(p) && s.err == nil {
		if err := s.fill(); err != nil {
			s.err = err
		}
	}
	if s.off == len(s.out) {
		s.out, s.off = s.out[:0], 0
		return 0, s.err
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}

// readLine returns the next line, with its line end; the slice is valid
// until the next call. At the end of the input it returns the last line
// (without a line end, possibly empty) and io.EOF; on another error, what
// it read of the line is dropped. A line longer than maxLineBytes is read
// to its end but not kept: long reports it, and the slice holds only its
// line end.
func (s *splitter) readLine() (line []byte, long bool, err error) {
	if len(s.back) > 0 {
		h := s.back[0]
		s.back = s.back[1:]
		return h.b, h.long, nil
	}
	line, err = s.src.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = s.src.ReadSlice('\n')
			if !long && len(s.long)+len(line) > maxLineBytes {
				long = true
			}
			if !long {
				s.long = append(s.long, line...)
			}
		}
		line = s.long
		if long {
			line = line[:0]
			if err == nil {
				line = append(line, '\n')
			}
		}
	}
	switch {
	case err == nil, err == io.EOF:
		s.read += int64(len(line))
		return line, long, err
	default:
		return nil, false, err
	}
}

// fill moves the next row to out.
func (s *splitter) fill() error {
	line, long, err := s.readLine()
	if err != nil && (err != io.EOF || len(line) == 0 && !long) {
		return err
	}
	s.line++
	if long {
		s.unclosed = append(s.unclosed, unclosed{line: s.line, long: true})
		s.out = append(s.out, '\n')
		return nil
	}
	if s.stops == "" {
		s.comma = cmp.Or(s.comma, ',')
		s.stops = string([]byte{s.comma, '"'})
	}
	quoted, col := s.scanQuotes(line, false)
	if !quoted {
		s.out = append(s.out, line...)
		return nil
	}
	// The row goes on past this line: hold its lines until its quote
	// closes within the bounds.
	first := s.line
	rows := []held{{b: bytes.Clone(line)}}
	size := len(line)
	bad := false
	for quoted && err == nil && len(rows) < maxRowLines && size <= maxRowBytes {
		line, long, err = s.readLine()
		if err != nil && err != io.EOF {
			return err // a partial row is never passed on
		}
		if len(line) == 0 && !long {
			break
		}
		s.line++
		rows = append(rows, held{b: bytes.Clone(line), long: long})
		if long {
			bad = true // refused for its length on its own when read again
			break
		}
		size += len(line)
		quoted, bad = s.scanQuotesEnd(line)
	}
	if !quoted && !bad {
		for _, l := range rows {
			s.out = append(s.out, l.b...)
		}
		return nil
	}
	s.unclosed = append(s.unclosed, unclosed{line: first, col: col})
	s.out = append(s.out, '\n')
	s.line = first
	s.back = append(rows[1:len(rows):len(rows)], s.back...)
	return nil
}

// scanQuotesEnd is scanQuotes for a line that starts inside a quoted
// field; bad reports that the row ends there in a quote error, so that its
// quote did not close a field either.
func (s *splitter) scanQuotesEnd(line []byte) (open, bad bool) {
	open, _, bad = s.scanQuotesErr(line, true)
	return open, bad
}

// scanQuotes reports whether a quoted field is still open at the end of
// line, which starts inside a quoted field when quoted is set and at the
// start of a field otherwise; col is the 1-based column of the quote that
// opened it when it opened on this line. Like encoding/csv, it takes a quote
// within an unquoted field, or anything but the delimiter or the line end
// after a closing quote, as an error that ends the row at the end of the
// line.
func (s *splitter) scanQuotes(line []byte, quoted bool) (open bool, col int) {
	open, col, _ = s.scanQuotesErr(line, quoted)
	return open, col
}

func (s *splitter) scanQuotesErr(line []byte, quoted bool) (open bool, col int, bad bool) {
	if !quoted && bytes.IndexByte(line, '"') < 0 {
		return false, 0, false
	}
	fieldStart := !quoted
	for i := 0; i < len(line); {
		switch {
		case quoted:
			j := bytes.IndexByte(line[i:], '"')
			if j < 0 {
				return true, col, false
			}
			i += j + 1
			if i < len(line) && line[i] == '"' { // an escaped quote
				i++
				continue
			}
			quoted, col = false, 0
			if i < len(line) && line[i] == s.comma {
				i++
				fieldStart = true
				continue
			}
			return false, 0, i < len(line) && line[i] != '\n' && !(line[i] == '\r' && (i+1 == len(line) || line[i+1] == '\n'))
		case fieldStart && line[i] == '"':
			quoted, col, fieldStart = true, i+1, false
			i++
		default:
			j := bytes.IndexAny(line[i:], s.stops)
			if j < 0 {
				return false, 0, false // the line end
			}
			if line[i+j] == '"' {
				return false, 0, true // a bare quote
			}
			i += j + 1
			fieldStart = true
		}
	}
	return quoted, col, false
}

// takeUnclosed returns the first row refused for an unclosed quote if it
// starts before line (any line when line is 0).
func (s *splitter) takeUnclosed(line int) (unclosed, bool) {
	if len(s.unclosed) == 0 || (line > 0 && s.unclosed[0].line >= line) {
		return unclosed{}, false
	}
	u := s.unclosed[0]
	s.unclosed = s.unclosed[1:]
	return u, true
}
