package ratelimit

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// ErrRetriesExhausted marks the error [Pacer.Do] returns when it gave up on
// an error that was still retryable: MaxRetries transient failures or
// MaxRateLimited 429 answers were used up. The last attempt's error is
// wrapped alongside it, so errors.As still finds its *linker.APIError or
// *linker.RateLimitError.
var ErrRetriesExhausted = errors.New("ratelimit: retries exhausted")

// CheckRetry reports whether a request that ended with resp and err may be
// sent again. It is a pure function, safe for concurrent use.
//
// It returns false when ctx is done or err is nil. It returns true for a
// *linker.RateLimitError (429), a *linker.APIError with status 408 or 5xx
// other than 501, and transport failures: a net.Error (except a DNS answer
// that the host does not exist), io.EOF, io.ErrUnexpectedEOF, ECONNRESET,
// ECONNREFUSED and context.DeadlineExceeded (a per-attempt timeout, since
// ctx itself is still alive). Every other error, including other 4xx answers
// and a context.Canceled that did not come from ctx, is final. Errors are
// matched through any wrapping. resp is not consulted: the linker client
// reports every non-2xx answer as an error.
func CheckRetry(ctx context.Context, resp *linker.Response, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	return retryable(err)
}

// retryable is CheckRetry without the ctx check.
func retryable(err error) bool {
	// The net/http client wraps every failure in a *url.Error, which is a
	// net.Error itself; classify what it carries instead.
	for {
		var ue *url.Error
		if !errors.As(err, &ue) || ue.Err == nil {
			break
		}
		err = ue.Err
	}
	var rl *linker.RateLimitError
	if errors.As(err, &rl) {
		return true
	}
	var ae *linker.APIError
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

// Backoff returns how long to pause before retry number attempt (1 for the
// first retry; smaller values count as 1). The ceiling c doubles with each
// attempt, from 2·minWait for the first, and is capped at maxWait; the result
// is drawn uniformly from [c/2, c] ("equal jitter"), so it is never below
// minWait (unless maxWait < 2·minWait) and never above maxWait. A nil rnd
// gives c itself. A *rand.Rand is not safe for concurrent use, so neither is
// Backoff with a shared rnd.
func Backoff(attempt int, minWait, maxWait time.Duration, rnd *rand.Rand) time.Duration {
	if maxWait <= 0 {
		return 0
	}
	minWait = max(minWait, 1)
	maxWait = max(maxWait, minWait)
	c := minWait
	for range limitAttempt(attempt) {
		if c > maxWait/2 {
			c = maxWait
			break
		}
		c *= 2
	}
	if rnd == nil {
		return c
	}
	lo := c / 2
	return lo + time.Duration(rnd.Int64N(int64(c-lo)+1))
}

// limitAttempt keeps attempt in [1, 64]: past 63 doublings every positive
// duration has reached any cap.
func limitAttempt(attempt int) int {
	return max(1, min(attempt, 64))
}
