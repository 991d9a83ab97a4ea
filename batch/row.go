package batch

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/linkbatch/linkbatch/linker"
)

// Column names of the input file, as matched against its header (after
// trimming and lowering the header's names).
const (
	colPrimary           = "primary_user_id"
	colSecondary         = "secondary_user_id"
	colSecondaryProvider = "secondary_provider"
	colConnectionID      = "connection_id"
	colLinkWith          = "link_with"
)

// Row is one data row of the input file.
//
// Secondary is the full id of the account to merge in ("provider|user_id"),
// or, when SecondaryProvider is set, the identity's bare user_id (a leading
// "<SecondaryProvider>|" is then dropped). LinkWith is the secondary's JWT,
// sent alone; it never appears in String, GoString or any error.
//
// Err is non-nil when the row could not be read (a CSV syntax error or a
// wrong number of fields; the other fields are then empty) or when it is
// invalid (a *FieldError from Validate).
//
// A row is validated once, by Check (the Reader does it for every row it
// returns); a checked row carries its link request, which Request returns
// without validating again.
type Row struct {
	Line              int    `csv:"-"`
	Primary           string `csv:"primary_user_id"`
	Secondary         string `csv:"secondary_user_id"`
	SecondaryProvider string `csv:"secondary_provider"`
	ConnectionID      string `csv:"connection_id"`
	LinkWith          string `csv:"link_with"`
	Err               error  `csv:"-"`

	// The fields below are set by a Source that delivers rows as messages
	// (a queue); a CSV row leaves them zero.

	// MessageID names the message the row came from (a stream entry id, a
	// stream sequence); it is copied to the row's Result.
	MessageID string `csv:"-"`
	// Kept says the row's result is durable already (a message delivered
	// again after an earlier run wrote its result but before it was
	// acknowledged): the pool acknowledges it at once, writes no second
	// result and counts it in Summary.Kept, as a line of Runner.Done.
	Kept bool `csv:"-"`

	checked bool               // Check ran: req or Err holds its outcome
	req     linker.LinkRequest // the request of a checked valid row
}

// FieldError says which column of a row is wrong and why. Err never holds
// the column's secret content; it may be one of linker's sentinels
// (linker.ErrEmptyID, linker.ErrEmptyIDPart and the like), which errors.Is
// finds through Unwrap.
type FieldError struct {
	Field string // the column name, e.g. "secondary_user_id"
	Err   error  // what is wrong
}

// Error returns "FIELD: ERR".
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr returns a *FieldError whose Err says msg.
func fieldErr(field, msg string) *FieldError { return &FieldError{Field: field, Err: errors.New(msg)} }

// fieldErrOf returns a *FieldError wrapping err.
func fieldErrOf(field string, err error) *FieldError { return &FieldError{Field: field, Err: err} }

// String describes the row by its line and ids, without its link_with JWT.
func (r Row) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: %s <- ", r.Line, r.Primary)
	switch {
	case r.LinkWith != "":
		b.WriteString("link_with JWT")
	case r.SecondaryKey() != "":
		b.WriteString(r.SecondaryKey())
	default:
		b.WriteString(r.Secondary)
	}
	if r.ConnectionID != "" {
		b.WriteString(" via " + r.ConnectionID)
	}
	return b.String()
}

// GoString is String, so that %#v does not print the link_with JWT either.
func (r Row) GoString() string { return "batch.Row(" + r.String() + ")" }

// secondary returns the secondary's provider and identity user_id, as given
// (unchecked); ok is false for link_with rows and rows without a secondary.
func (r *Row) secondary() (provider, userID string, ok bool) {
	if r.LinkWith != "" || r.Secondary == "" {
		return "", "", false
	}
	if r.SecondaryProvider != "" {
		userID = r.Secondary
		if rest, found := strings.CutPrefix(r.Secondary, r.SecondaryProvider); found && strings.HasPrefix(rest, "|") {
			userID = rest[1:]
		}
		return r.SecondaryProvider, userID, true
	}
	provider, userID, found := strings.Cut(r.Secondary, "|")
	return provider, userID, found
}

// SecondaryKey returns the secondary's full id, "provider|user_id", built
// from SecondaryProvider and Secondary when the former is set. It returns ""
// for link_with rows and when there is no provider to be found.
func (r Row) SecondaryKey() string {
	provider, userID, ok := r.secondary()
	if !ok {
		return ""
	}
	if r.SecondaryProvider == "" {
		return r.Secondary
	}
	return provider + "|" + userID
}

// Validate checks the row without any request and returns the first problem
// found as a *FieldError naming the column, or nil. The rules:
//
//   - primary_user_id is a full user id: "provider|user_id", with no
//     control or invisible formatting characters, valid UTF-8 and no
//     leading or trailing spaces (the provider of a primary is not checked
//     against the API's enum: it is only the path of the request);
//   - with link_with: secondary_user_id, secondary_provider and
//     connection_id must be empty (the token alone names the secondary; a
//     label next to it could name another account and would escape the
//     plan's duplicate and conflict checks), and link_with must look like a
//     JWS (three non-empty base64url parts joined by '.');
//   - otherwise secondary_user_id is required and follows the primary's
//     text rules; its provider (secondary_provider when given, else the
//     text before the first '|') must be in the API's provider enum; the
//     identity user_id (all the rest, '|' included) must not be empty;
//     connection_id, when given, must match ^con_[A-Za-z0-9]{16}$; and the
//     secondary must differ from the primary.
func (r Row) Validate() error {
	_, _, err := r.validate()
	return err
}

// validate is Validate, returning as well the secondary's provider and
// identity user_id of a valid row without link_with (as secondary does),
// each id being split once.
func (r *Row) validate() (provider, userID string, err error) {
	if err := checkUserID(colPrimary, r.Primary); err != nil {
		return "", "", err
	}
	if r.LinkWith != "" {
		switch {
		case r.Secondary != "":
			return "", "", fieldErr(colSecondary, "must be empty when link_with is given (the token names the secondary)")
		case r.SecondaryProvider != "":
			return "", "", fieldErr(colSecondaryProvider, "must be empty when link_with is given")
		case r.ConnectionID != "":
			return "", "", fieldErr(colConnectionID, "must be empty when link_with is given")
		case !looksLikeJWT(r.LinkWith):
			return "", "", fieldErr(colLinkWith, "is not a JWT (want three base64url parts joined by '.')")
		}
		return "", "", nil
	}
	if r.SecondaryProvider != "" {
		if !linker.ValidProvider(r.SecondaryProvider) {
			return "", "", fieldErr(colSecondaryProvider, fmt.Sprintf("provider %s is not a known identity provider", quote(r.SecondaryProvider)))
		}
		if err := checkText(colSecondary, r.Secondary); err != nil {
			return "", "", err
		}
		if provider, userID, _ = r.secondary(); userID == "" {
			return "", "", fieldErrOf(colSecondary, linker.ErrEmptyIDPart)
		}
	} else {
		if provider, userID, err = splitUserID(colSecondary, r.Secondary); err != nil {
			return "", "", err
		}
		if !linker.ValidProvider(provider) {
			return "", "", fieldErr(colSecondary, fmt.Sprintf("provider %s is not a known identity provider", quote(provider)))
		}
	}
	if r.ConnectionID != "" && !linker.ValidConnectionID(r.ConnectionID) {
		return "", "", fieldErr(colConnectionID, fmt.Sprintf("%s is not a connection id (want con_ and 16 letters or digits)", quote(r.ConnectionID)))
	}
	// The secondary's key (SecondaryKey), provider|userID, compared with
	// the primary without being built.
	if p := r.Primary; len(p) == len(provider)+1+len(userID) && p[len(provider)] == '|' &&
		strings.HasPrefix(p, provider) && strings.HasSuffix(p, userID) {
		return "", "", fieldErr(colSecondary, "is the primary itself")
	}
	return provider, userID, nil
}

// Check validates the row once and returns it carrying the outcome: its
// link request, or Err set to the *FieldError of Validate. A row that
// already has an Err (one that could not be read) is returned marked
// checked, as it is. Checking a checked row does nothing.
func (r Row) Check() Row {
	r.check()
	return r
}

// check is Check in place.
func (r *Row) check() {
	if r.checked {
		return
	}
	r.checked = true
	if r.Err != nil {
		return
	}
	provider, userID, err := r.validate()
	if err != nil {
		r.Err = err
		return
	}
	if r.LinkWith != "" {
		r.req = linker.LinkRequest{PrimaryID: r.Primary, LinkWith: r.LinkWith}
		return
	}
	r.req = linker.LinkRequest{PrimaryID: r.Primary, Provider: provider, UserID: userID, ConnectionID: r.ConnectionID}
}

// Request returns the link request the row asks for, or the row's error.
// A row that was not checked is checked first (on a copy: check it once
// with Check to validate it once).
func (r Row) Request() (linker.LinkRequest, error) {
	r = r.Check()
	if r.Err != nil {
		return linker.LinkRequest{}, r.Err
	}
	return r.req, nil
}

// checkUserID checks a full user id "provider|user_id".
func checkUserID(field, id string) error {
	_, _, err := splitUserID(field, id)
	return err
}

// splitUserID checks a full user id "provider|user_id" and returns its
// provider and user_id.
func splitUserID(field, id string) (provider, userID string, err error) {
	if err := checkText(field, id); err != nil {
		return "", "", err
	}
	// What linker.ParseUserID checks besides checkText's rules (which are
	// stricter than linker.CheckID's), without scanning the id again.
	provider, userID, ok := strings.Cut(id, "|")
	switch {
	case !ok || provider == "":
		return "", "", fieldErrOf(field, linker.ErrNoProvider)
	case userID == "":
		return "", "", fieldErrOf(field, linker.ErrEmptyIDPart)
	}
	return provider, userID, nil
}

// checkText rejects a blank value and text that would not reach the API as
// written: invalid UTF-8 (JSON encoding would replace it), control and
// invisible formatting characters, and surrounding spaces.
func checkText(field, s string) error {
	if len(s) > linker.MaxIDLen {
		return fieldErr(field, fmt.Sprintf("is %d bytes long, longer than any user id (at most %d)", len(s), linker.MaxIDLen))
	}
	// Most ids start and end with a printable ASCII character: then they
	// are neither blank nor surrounded by spaces, and TrimSpace is not needed.
	plainEnds := len(s) > 0 && printableASCII(s[0]) && printableASCII(s[len(s)-1])
	if !plainEnds && strings.TrimSpace(s) == "" {
		return fieldErrOf(field, linker.ErrEmptyID)
	}
	for i := 0; i < len(s); {
		if i+8 <= len(s) && printableASCII8(s[i:i+8]) {
			i += 8
			continue
		}
		if c := s[i]; c < utf8.RuneSelf { // fast path for ASCII
			if c < 0x20 || c == 0x7f {
				return fieldErrOf(field, linker.ErrControlChars)
			}
			i++
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			return fieldErr(field, "is not valid UTF-8")
		case unicode.IsControl(c):
			return fieldErrOf(field, linker.ErrControlChars)
		case unicode.Is(unicode.Cf, c):
			return fieldErr(field, "contains invisible formatting characters")
		}
		i += size
	}
	if !plainEnds && strings.TrimSpace(s) != s {
		return fieldErr(field, "has leading or trailing spaces")
	}
	return nil
}

// printableASCII8 reports whether the 8 bytes of s are all printable ASCII
// or the space (0x20 to 0x7e), 8 at a time.
func printableASCII8(s string) bool {
	w := load8(s)
	below := (w - ones*0x20) &^ w     // a byte below 0x20 sets its high bit
	above := w + ones*(0x7f-0x7e) | w // a byte above 0x7e sets its high bit
	return (below|above)&highs == 0
}

// Words of 8 bytes, for testing 8 bytes at a time: each byte 0x01, each
// byte 0x80.
const ones, highs = 0x0101010101010101, 0x8080808080808080

// load8 returns the first 8 bytes of s as a little-endian word.
func load8(s string) uint64 {
	_ = s[7] // one bounds check for the 8 bytes
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// byteMask returns a word in which the high bit of some byte is set if and
// only if some byte of w is c.
func byteMask(w uint64, c byte) uint64 {
	v := w ^ ones*uint64(c) // a byte c is now 0
	return (v - ones) &^ v  // a byte 0 sets its high bit
}

// printableASCII reports whether c is a printable ASCII character other
// than the space.
func printableASCII(c byte) bool { return c > ' ' && c < 0x7f }

// looksLikeJWT reports whether s has the shape of a compact JWS: three
// non-empty parts of the base64url alphabet joined by '.'.
func looksLikeJWT(s string) bool {
	parts := 0
	partLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if partLen == 0 {
				return false
			}
			parts++
			partLen = 0
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			partLen++
		default:
			return false
		}
	}
	return parts == 2 && partLen > 0
}

// quote quotes a value for an error message, shortened when long.
func quote(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
