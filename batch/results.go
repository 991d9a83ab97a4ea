package batch

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Result is the outcome of one input row: one line of the results file.
type Result struct {
	Line       int
	Primary    string
	Secondary  string
	Status     Status
	HTTPStatus int
	Attempts   int
	ErrorCode  string
	Error      string
	Duration   time.Duration
	// Retryable marks a failed row whose failure was transient (retries
	// exhausted on 429, 5xx or the network): a resumed run tries it again.
	Retryable bool
	// Warning flags a pair that a reviewer should look at before linking
	// (WarnEmailMismatch, WarnEmailUnverified), set when the users were read.
	Warning string
	// SecondaryProvider is the input's secondary_provider: with it,
	// Secondary is a bare user_id of that provider.
	SecondaryProvider string
	// PrimaryEmail and SecondaryEmail are the two users' email addresses,
	// set with a Warning when the users were read. They are personal data:
	// they are never written to the results file nor logged; only the
	// report shows them (masked unless asked otherwise).
	PrimaryEmail, SecondaryEmail string
	// MessageID is the row's Row.MessageID: the message it came from, in
	// queue mode; "" for a CSV row.
	MessageID string

	// fatal is the kind (see linker.FatalForAll) of a failure that every
	// row would meet alike; it is not written out.
	fatal string
}

// Warnings, as written in the results file's warning column.
const (
	WarnEmailMismatch   = "email_mismatch"   // the two users' emails differ, or one has none
	WarnEmailUnverified = "email_unverified" // an email is not verified: linking on it risks an account takeover
)

// Final reports whether a resumed run keeps r as it is rather than processing
// its line again.
func (r Result) Final() bool {
	switch r.Status {
	case StatusLinked, StatusAlreadyLinked, StatusInvalid, StatusSkipped,
		StatusUnlinked, StatusAlreadyUnlinked:
		return true
	case StatusFailed:
		return !r.Retryable
	}
	return false
}

// resultColumns is the header of the results file, in order.
var resultColumns = []string{
	"line", "primary_user_id", "secondary_user_id", "status", "http_status",
	"attempts", "error_code", "error", "duration_ms", "retryable", "warning",
	"secondary_provider",
}

func (r Result) record() []string {
	return r.appendRecord(make([]string, 0, len(resultColumns)))
}

// appendRecord appends the fields of r's row to rec.
func (r Result) appendRecord(rec []string) []string {
	httpStatus := ""
	if r.HTTPStatus != 0 {
		httpStatus = strconv.Itoa(r.HTTPStatus)
	}
	return append(rec,
		strconv.Itoa(r.Line),
		Defuse(r.Primary),
		Defuse(r.Secondary),
		string(r.Status),
		httpStatus,
		strconv.Itoa(r.Attempts),
		Defuse(r.ErrorCode),
		Defuse(r.Error),
		strconv.FormatInt(r.Duration.Milliseconds(), 10),
		strconv.FormatBool(r.Retryable),
		r.Warning,
		Defuse(r.SecondaryProvider),
	)
}

// Fields returns r as the results file writes it, column name to value,
// with the message_id column: the fields of a result published as a
// stream entry.
func (r Result) Fields() map[string]string {
	m := make(map[string]string, len(resultColumns)+1)
	for i, v := range r.record() {
		m[resultColumns[i]] = v
	}
	m[ColMessageID] = Defuse(r.MessageID)
	return m
}

// Defuse returns s made safe to open in a spreadsheet: a cell that starts
// with a character a spreadsheet reads as a formula (= + - @, tab or carriage
// return) gets a leading apostrophe.
func Defuse(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// ColMessageID is the results file's column of Result.MessageID, written
// last, in queue mode only (NewMessageResultWriter).
const ColMessageID = "message_id"

// ResultWriter writes results as CSV, as encoding/csv's Writer writes
// records (appendCSVField). Write flushes every row; Append and Flush let a
// caller flush several rows at once. It is safe for concurrent use.
type ResultWriter struct {
	mu        sync.Mutex
	bw        *bufio.Writer
	row       []byte // reused by Append
	messageID bool   // write the message_id column
}

// NewResultWriter returns a writer to w. With header set it first writes the
// header row.
func NewResultWriter(w io.Writer, header bool) (*ResultWriter, error) {
	return newResultWriter(w, header, false)
}

// NewMessageResultWriter is NewResultWriter for the results of a queue: each
// row ends with the message_id column (ColMessageID).
func NewMessageResultWriter(w io.Writer, header bool) (*ResultWriter, error) {
	return newResultWriter(w, header, true)
}

func newResultWriter(w io.Writer, header, messageID bool) (*ResultWriter, error) {
	rw := &ResultWriter{bw: bufio.NewWriterSize(w, 64<<10), messageID: messageID}
	if header {
		cols := resultColumns
		if messageID {
			cols = append(slices.Clone(cols), ColMessageID)
		}
		for i, c := range cols {
			if i > 0 {
				rw.row = append(rw.row, ',')
			}
			rw.row = appendCSVField(rw.row, c)
		}
		rw.row = append(rw.row, '\n')
		if err := rw.write(); err != nil {
			return nil, err
		}
	}
	return rw, nil
}

// appendRow appends r's row, as this writer writes it, to rw.row. It is
// appendRecord's fields, each as appendCSVField writes it, without a string
// made for a number.
func (rw *ResultWriter) appendRow(r *Result) {
	b := strconv.AppendInt(rw.row[:0], int64(r.Line), 10)
	b = appendCSVField(append(b, ','), Defuse(r.Primary))
	b = appendCSVField(append(b, ','), Defuse(r.Secondary))
	b = appendCSVField(append(b, ','), string(r.Status))
	b = append(b, ',')
	if r.HTTPStatus != 0 {
		b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	}
	b = strconv.AppendInt(append(b, ','), int64(r.Attempts), 10)
	b = appendCSVField(append(b, ','), Defuse(r.ErrorCode))
	b = appendCSVField(append(b, ','), Defuse(r.Error))
	b = strconv.AppendInt(append(b, ','), r.Duration.Milliseconds(), 10)
	b = strconv.AppendBool(append(b, ','), r.Retryable)
	b = appendCSVField(append(b, ','), r.Warning)
	b = appendCSVField(append(b, ','), Defuse(r.SecondaryProvider))
	if rw.messageID {
		b = appendCSVField(append(b, ','), Defuse(r.MessageID))
	}
	rw.row = append(b, '\n')
}

// appendCSVField appends field to b as encoding/csv's Writer writes it
// with a ',' delimiter and LF line ends: quoted when it is "\\.", holds a
// delimiter, a quote or a line end, or starts with a space (by
// unicode.IsSpace); a quote inside doubled.
func appendCSVField(b []byte, field string) []byte {
	if !csvNeedsQuotes(field) {
		return append(b, field...)
	}
	b = append(b, '"')
	for {
		i := strings.IndexByte(field, '"')
		if i < 0 {
			break
		}
		b = append(append(b, field[:i+1]...), '"')
		field = field[i+1:]
	}
	return append(append(b, field...), '"')
}

// csvSpecial marks the bytes that make encoding/csv quote a field.
var csvSpecial = [256]bool{'\n': true, '\r': true, '"': true, ',': true}

// csvNeedsQuotes is encoding/csv's Writer.fieldNeedsQuotes for a ','
// delimiter.
func csvNeedsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` {
		return true
	}
	i := 0
	for ; i+8 <= len(field); i += 8 {
		if w := load8(field[i:]); (byteMask(w, ',')|byteMask(w, '"')|byteMask(w, '\n')|byteMask(w, '\r'))&highs != 0 {
			return true
		}
	}
	for ; i < len(field); i++ {
		if csvSpecial[field[i]] {
			return true
		}
	}
	if c := field[0]; c < utf8.RuneSelf {
		return c == ' ' || c == '\t' || c == '\v' || c == '\f' // '\n' and '\r' are above
	}
	r1, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r1)
}

// Write appends one result and flushes it. It returns the underlying
// writer's error.
func (rw *ResultWriter) Write(r Result) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.appendRow(&r)
	return rw.write()
}

// appendAll is Append for several results, under one lock. It returns
// how many it appended: all, or those before the one whose error it
// returns.
func (rw *ResultWriter) appendAll(results []Result) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	for i := range results {
		rw.appendRow(&results[i])
		if _, err := rw.bw.Write(rw.row); err != nil {
			return i, fmt.Errorf("write results: %w", err)
		}
	}
	return len(results), nil
}

// Append appends one result without flushing it; Flush must follow. It lets
// a caller that has several results at hand write them with one flush.
func (rw *ResultWriter) Append(r Result) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.appendRow(&r)
	if _, err := rw.bw.Write(rw.row); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// Flush writes out the results appended so far.
func (rw *ResultWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.flush()
}

// write writes rw.row and flushes.
func (rw *ResultWriter) write() error {
	if _, err := rw.bw.Write(rw.row); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return rw.flush()
}

func (rw *ResultWriter) flush() error {
	if err := rw.bw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// ReadResults reads a results file written by ResultWriter and calls fn for
// each row, in file order. A row that does not parse is reported as an error
// naming its line.
func ReadResults(r io.Reader, fn func(Result) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read results header: %w", err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.TrimSpace(strings.ToLower(h))] = i
	}
	for _, name := range []string{"line", "status"} {
		if _, ok := col[name]; !ok {
			return fmt.Errorf("read results: no %q column", name)
		}
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return rec[i]
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		line, _ := cr.FieldPos(0)
		res := Result{
			Primary:   undefuse(get(rec, "primary_user_id")),
			Secondary: undefuse(get(rec, "secondary_user_id")),
			Status:    Status(get(rec, "status")),
			ErrorCode: undefuse(get(rec, "error_code")),
			Error:     undefuse(get(rec, "error")),
		}
		if res.Line, err = strconv.Atoi(get(rec, "line")); err != nil || res.Line < 1 {
			return fmt.Errorf("read results: line %d: bad line number %q", line, get(rec, "line"))
		}
		if s := get(rec, "http_status"); s != "" {
			res.HTTPStatus, _ = strconv.Atoi(s)
		}
		res.Attempts, _ = strconv.Atoi(get(rec, "attempts"))
		if ms, err := strconv.ParseInt(get(rec, "duration_ms"), 10, 64); err == nil {
			res.Duration = time.Duration(ms) * time.Millisecond
		}
		res.Retryable, _ = strconv.ParseBool(get(rec, "retryable"))
		res.Warning = get(rec, "warning")
		res.SecondaryProvider = undefuse(get(rec, "secondary_provider"))
		res.MessageID = undefuse(get(rec, ColMessageID))
		if err := fn(res); err != nil {
			return err
		}
	}
}

// undefuse reverses Defuse.
func undefuse(s string) string {
	if len(s) >= 2 && s[0] == '\'' {
		switch s[1] {
		case '=', '+', '-', '@', '\t', '\r':
			return s[1:]
		}
	}
	return s
}
