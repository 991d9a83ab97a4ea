package linker

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// APIError is a non-2xx answer of the Management API, other than 429.
// Status is the HTTP status, Code the body's errorCode (often empty), Message
// its message and Title its error field (e.g. "Bad Request").
type APIError struct {
	Status  int
	Code    string
	Title   string
	Message string
}

// Error formats the error as "STATUS TITLE: MESSAGE (CODE)".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", e.Status)
	title := e.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	if title != "" {
		b.WriteString(" " + title)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	return b.String()
}

// RateLimitError is a 429 answer. Reset is when the server said a request
// may be sent again (from x-ratelimit-reset or Retry-After, whichever was
// present); zero when it said neither.
type RateLimitError struct {
	APIError
	Reset time.Time
}

// Error formats the error with its reset time.
func (e *RateLimitError) Error() string {
	if e.Reset.IsZero() {
		return e.APIError.Error()
	}
	return fmt.Sprintf("%s, reset at %s", e.APIError.Error(), e.Reset.UTC().Format(time.RFC3339))
}

// Unwrap returns the embedded *APIError, so errors.As finds it too.
func (e *RateLimitError) Unwrap() error { return &e.APIError }

// Messages the API gives for the cases linkbatch treats specially.
const (
	MsgInexistentIdentity = "Linking to an inexistent identity is not allowed."
	MsgSameIdentity       = "Main identity and the new one are the same."
	MsgIdentityExists     = "Specified identity already exists."
)

// StatusOf returns the HTTP status carried by err, or 0 when err is not an
// API answer (nil, a transport error, a cancelled context).
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// IsAuth reports whether err is a 401 or 403 answer: credentials that are
// wrong for every row.
func IsAuth(err error) bool {
	s := StatusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// IsTokenExpired reports whether err is a 401 whose message says the token
// has expired (a renewable condition, unlike a revoked or forged token).
func IsTokenExpired(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return false
	}
	return strings.Contains(strings.ToLower(ae.Message), "expired")
}

// IsMaybeAlreadyLinked reports whether err is one of the answers the API
// gives when the secondary is already linked (to this primary, perhaps by an
// earlier attempt whose answer was lost): 400 "Linking to an inexistent
// identity is not allowed." or 409 "Specified identity already exists.".
func IsMaybeAlreadyLinked(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusConflict:
		return true
	case http.StatusBadRequest:
		return ae.Message == MsgInexistentIdentity
	}
	return false
}
