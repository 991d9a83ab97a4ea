package linkertest

import (
	"math"
	"net/http"
	"time"
)

// The global limit: free and trial Auth0 tenants also have an API-global
// rate limit (2 requests/s, burst 10) that no header announces. A request
// is checked against it first; one it refuses is answered 429 "Global limit
// has been reached", with the x-ratelimit-* headers of the announced bucket
// as they are (it takes no token from it), so that remaining may show
// tokens left.

// msgGlobalLimit is the message of a 429 from the global limit.
const msgGlobalLimit = "Global limit has been reached"

// newGlobal returns the bucket of the global limit rl, or nil when rl sets
// none (zero Burst and Rate).
func newGlobal(rl RateLimit, now time.Time) *bucket {
	if rl.Burst <= 0 && rl.Rate <= 0 {
		return nil
	}
	return newBucket(rl, now)
}

// refuseGlobal draws a token from the global limit at now, if there is
// one; when it has none it answers w with a 429 carrying the announced
// bucket's headers and reports true.
func (s *Server) refuseGlobal(w http.ResponseWriter, now time.Time) bool {
	if s.global == nil || s.global.take(now).ok {
		return false
	}
	s.bucket.peek(now).setHeaders(w.Header())
	s.writeError(w, http.StatusTooManyRequests, "too_many_requests", msgGlobalLimit)
	return true
}

// peek returns what a draw at now would say of the bucket, taking nothing.
func (b *bucket) peek(now time.Time) verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unlimited() {
		return verdict{ok: true, limit: UnlimitedBurst, remaining: UnlimitedBurst, reset: now}
	}
	b.refill(now)
	const eps = 1e-9
	return verdict{
		ok:        b.tokens >= 1-eps,
		limit:     b.cfg.Burst,
		remaining: int(math.Floor(b.tokens + eps)),
		reset:     now.Add(b.until(float64(b.cfg.Burst) - b.tokens)),
	}
}
