package linker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
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

// Kinds of failure that every request to the tenant meets alike, whatever
// the row: FatalForAll returns one of them.
const (
	FatalDNS         = "dns"                // the tenant's host name does not resolve
	FatalRefused     = "connection_refused" // nothing accepts connections at the tenant's address
	FatalTLS         = "tls"                // the tenant's TLS handshake or certificate fails
	FatalTokenFormat = "token_format"       // the token is not a JWT: 400 "Bad HTTP authentication header format"
)

// MsgBadAuthHeader is the message of Auth0's 400 answer (error code
// "Bearer") to a bearer token that is not a JWT.
const MsgBadAuthHeader = "Bad HTTP authentication header format"

// FatalForAll returns the kind (FatalDNS, FatalRefused, FatalTLS or
// FatalTokenFormat) of an error that no row can escape, because it comes
// from the tenant's address or the token rather than from the row: a DNS
// failure (*net.DNSError), a refused connection (ECONNREFUSED), a TLS
// failure (an untrusted, expired or mismatched certificate, or a server
// that does not speak TLS), or Auth0's 400 "Bad HTTP authentication header
// format" (code "Bearer"). It returns "" for any other error, nil included.
// Errors are matched through any wrapping. It is safe for concurrent use.
func FatalForAll(err error) string {
	if err == nil {
		return ""
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusBadRequest && (ae.Code == "Bearer" || ae.Message == MsgBadAuthHeader) {
			return FatalTokenFormat
		}
		return ""
	}
	var (
		dnsErr    *net.DNSError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &dnsErr):
		return FatalDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return FatalRefused
	case errors.As(err, &verifyErr), errors.As(err, &recordErr), errors.As(err, &authority),
		errors.As(err, &hostname), errors.As(err, &invalid),
		// net/http reports a TLS record that is plain HTTP by text only.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return FatalTLS
	}
	return ""
}
