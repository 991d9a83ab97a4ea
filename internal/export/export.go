// Package export reads an Auth0 user export, the file that the bulk export
// job (POST /api/v2/jobs/users-exports) produces, one user at a time.
//
// It owns the file formats: gzip or plain, newline-delimited JSON (one user
// object a line) or the CSV form, whose header names the exported fields and
// whose string values are quoted and prefixed with a single quote (a
// spreadsheet-formula guard that Reader removes). It turns each line into a
// [User] holding the few fields that planning needs. It knows nothing of
// grouping users, of choosing primaries, or of the Management API.
package export

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Identity is one entry of a user's identities array.
type Identity struct {
	Provider   string
	UserID     string // without the provider prefix
	Connection string
}

// FullID returns "provider|user_id".
func (id Identity) FullID() string { return id.Provider + "|" + id.UserID }

// Is reports whether full is the identity's full id, without building it.
func (id Identity) Is(full string) bool {
	p := len(id.Provider)
	return len(full) == p+1+len(id.UserID) && full[:p] == id.Provider && full[p] == '|' && full[p+1:] == id.UserID
}

// User is what an export line says about one user.
type User struct {
	Line          int // the physical line of the export where the user starts
	UserID        string
	Email         string
	EmailVerified bool
	CreatedAt     time.Time // zero when the export has none
	LoginsCount   int64
	// Identities is the user's identities array; Identities[0] is the
	// user's own identity. A CSV export without identities columns gets
	// the own identity derived from UserID (connection unknown).
	Identities []Identity
}

// Connection returns the connection of the user's own identity, "" when
// unknown.
func (u User) Connection() string {
	if len(u.Identities) == 0 {
		return ""
	}
	return u.Identities[0].Connection
}

// LineError is a line of the export that cannot be read as a user; reading
// goes on after it.
type LineError struct {
	Line  int
	Field string // the field at fault; "" when the line as a whole is
	Msg   string
}

// Error returns "line N: FIELD: MSG".
func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
}

// Format is the form of an export file.
type Format int

// Formats of an export.
const (
	NDJSON Format = iota + 1
	CSV
)

// String returns "json" or "csv".
func (f Format) String() string {
	switch f {
	case NDJSON:
		return "json"
	case CSV:
		return "csv"
	}
	return "unknown"
}

// MaxLine is the longest line (in bytes) of an NDJSON export that Reader
// accepts; a longer one ends reading with an error.
const MaxLine = 16 << 20

// Reader reads the users of an export one at a time. It holds one line in
// memory at a time. A Reader is not safe for concurrent use.
type Reader struct {
	format Format
	gz     *gzip.Reader

	// NDJSON
	sc   *bufio.Scanner
	line int

	// CSV
	cr   *csv.Reader
	cols csvColumns
	err  error // sticky end of reading
}

// NewReader detects the form of the export r (gzip or not, NDJSON or CSV:
// a first non-blank byte '{' means NDJSON) and, for CSV, reads its header.
// It returns an error when r is empty, not a valid gzip stream, or a CSV
// export without a user_id column.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	rd := &Reader{}
	if b, err := br.Peek(2); err == nil && b[0] == 0x1f && b[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read gzip header: %w", err)
		}
		gz.Multistream(true)
		rd.gz = gz
		br = bufio.NewReaderSize(gz, 256<<10)
	}
	first, err := firstByte(br)
	if err != nil {
		return nil, err
	}
	if first == '{' {
		rd.format = NDJSON
		rd.sc = bufio.NewScanner(br)
		rd.sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
		return rd, nil
	}
	rd.format = CSV
	rd.cr = csv.NewReader(br)
	rd.cr.FieldsPerRecord = -1
	rd.cr.ReuseRecord = true
	header, err := rd.cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read CSV header: %w", err)
	}
	if rd.cols, err = mapColumns(header); err != nil {
		return nil, err
	}
	return rd, nil
}

// firstByte returns the first byte that is not white space or a UTF-8 byte
// order mark, without consuming it.
func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if errors.Is(err, io.EOF) {
			return 0, errors.New("the export is empty")
		}
		if err != nil {
			return 0, fmt.Errorf("read export: %w", err)
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.Discard(1)
			continue
		case 0xef:
			if bom, err := br.Peek(3); err == nil && string(bom) == "\ufeff" {
				_, _ = br.Discard(3)
				continue
			}
		}
		return b[0], nil
	}
}

// Format returns the detected form of the export.
func (r *Reader) Format() Format { return r.format }

// Next returns the next user, or io.EOF after the last one. A line that
// cannot be read as a user comes back as a *[LineError] (the User is then
// empty) and reading may go on; any other error ends reading and is
// returned again by later calls.
func (r *Reader) Next() (User, error) {
	if r.err != nil {
		return User{}, r.err
	}
	if r.format == NDJSON {
		for r.sc.Scan() {
			r.line++
			b := r.sc.Bytes()
			if len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			u, err := ParseLine(b)
			if err != nil {
				var le *LineError
				if errors.As(err, &le) {
					le.Line = r.line
				}
				return User{}, err
			}
			u.Line = r.line
			return u, nil
		}
		r.err = io.EOF
		if err := r.sc.Err(); err != nil {
			r.err = fmt.Errorf("read export after line %d: %w", r.line, err)
		}
		return User{}, r.err
	}
	return r.nextCSV()
}

// wireUser is a line of an NDJSON export, reduced to what is read. Fields
// are values, not pointers, to keep allocations down: a JSON null leaves
// the zero value, as an absent field does.
type wireUser struct {
	UserID        idValue         `json:"user_id"`
	Email         string          `json:"email"`
	EmailVerified bool            `json:"email_verified"`
	CreatedAt     string          `json:"created_at"`
	LoginsCount   json.RawMessage `json:"logins_count"`
	Identities    []wireIdentity  `json:"identities"`
}

type wireIdentity struct {
	Provider   string  `json:"provider"`
	UserID     idValue `json:"user_id"`
	Connection string  `json:"connection"`
}

// idValue is a user_id, which the API may render as a number.
type idValue string

func (v *idValue) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' {
		// A plain string (the usual case) needs no second decoder.
		if s := b[1 : len(b)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
			*v = idValue(s)
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = idValue(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	if _, err := strconv.ParseInt(string(b), 10, 64); err != nil {
		return errors.New("user_id is neither a string nor an integer")
	}
	*v = idValue(b)
	return nil
}

// ParseLine parses one line of an NDJSON export. It returns a *[LineError]
// (with Line 0) naming the field at fault when the line is not a JSON
// object, has no user_id, or has a field of the wrong type or form.
func ParseLine(b []byte) (User, error) {
	var w wireUser
	if err := json.Unmarshal(b, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return User{}, &LineError{Field: te.Field, Msg: "want " + te.Type.String() + ", not a JSON " + te.Value}
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return User{}, &LineError{Msg: fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)}
		}
		return User{}, &LineError{Msg: "not a JSON user object: " + err.Error()}
	}
	if w.UserID == "" {
		return User{}, &LineError{Field: "user_id", Msg: "missing"}
	}
	u := User{UserID: string(w.UserID), Email: w.Email, EmailVerified: w.EmailVerified}
	if w.CreatedAt != "" {
		t, err := parseTime(w.CreatedAt)
		if err != nil {
			return User{}, &LineError{Field: "created_at", Msg: err.Error()}
		}
		u.CreatedAt = t
	}
	if len(w.LoginsCount) > 0 && string(w.LoginsCount) != "null" {
		n, err := strconv.ParseInt(string(w.LoginsCount), 10, 64)
		if err != nil || n < 0 {
			return User{}, &LineError{Field: "logins_count", Msg: "want a non-negative integer"}
		}
		u.LoginsCount = n
	}
	if len(w.Identities) > 0 {
		u.Identities = make([]Identity, 0, len(w.Identities))
		for i, wi := range w.Identities {
			if wi.Provider == "" || wi.UserID == "" {
				return User{}, &LineError{Field: fmt.Sprintf("identities[%d]", i), Msg: "needs a provider and a user_id"}
			}
			u.Identities = append(u.Identities, Identity{Provider: wi.Provider, UserID: string(wi.UserID), Connection: wi.Connection})
		}
	} else {
		u.Identities = ownIdentity(u.UserID, "")
	}
	return u, nil
}

// parseTime reads an RFC 3339 timestamp, as the export writes created_at.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", shorten(s))
	}
	return t, nil
}

// ownIdentity derives a user's own identity from its full id, for exports
// that do not carry the identities array; nil when the id has no provider.
func ownIdentity(fullID, connection string) []Identity {
	provider, rest, ok := strings.Cut(fullID, "|")
	if !ok || provider == "" || rest == "" {
		return nil
	}
	return []Identity{{Provider: provider, UserID: rest, Connection: connection}}
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
