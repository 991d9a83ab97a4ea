package linker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// This file is the one place where linkbatch tells answers apart by their
// HTTP status: other packages ask these predicates.

// Retryable reports whether a request that failed with err may be sent
// again. It is a pure function, safe for concurrent use.
//
// It returns false for a nil err. It returns true for a *[RateLimitError]
// (429), an *[APIError] with status 408 or 5xx other than 501, and transport
// failures: a net.Error (except a DNS answer that the host does not exist),
// io.EOF, io.ErrUnexpectedEOF, ECONNRESET, ECONNREFUSED and
// context.DeadlineExceeded (a per-attempt timeout; whether the caller's own
// context is done is the caller's to check). Every other error, including
// other 4xx answers and context.Canceled, is final. Errors are matched
// through any wrapping.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	// The net/http client wraps every failure in a *url.Error, which is a
	// net.Error itself; classify what it carries instead.
	for {
		var ue *url.Error
		if !errors.As(err, &ue) || ue.Err == nil {
			break
		}
		err = ue.Err
	}
	if IsRateLimited(err) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusRequestTimeout ||
			(ae.Status >= 500 && ae.Status <= 599 && ae.Status != http.StatusNotImplemented)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED):
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// IsRateLimited reports whether err is a 429 answer (a *[RateLimitError],
// wrapped or not).
func IsRateLimited(err error) bool {
	var rl *RateLimitError
	return errors.As(err, &rl)
}

// RetryAt returns the Reset of the *[RateLimitError] in err: when the server
// said a request may be sent again. It is zero when err is not a 429 answer
// or the answer did not say.
func RetryAt(err error) time.Time {
	var rl *RateLimitError
	if errors.As(err, &rl) {
		return rl.Reset
	}
	return time.Time{}
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// IsForbidden reports whether err is a 403 answer: the token lacks a scope
// the request needs.
func IsForbidden(err error) bool { return StatusOf(err) == http.StatusForbidden }
