package linkertest

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateLimit is the token bucket every /api/v2 request draws from. The zero
// value means unlimited: answers still carry x-ratelimit-* headers, for a
// bucket of [UnlimitedBurst] that never drains.
//
// Burst is the bucket size (x-ratelimit-limit); zero with a positive Rate
// means ceil(Rate), at least 1. Rate is the refill in tokens per second,
// continuous; zero or negative with a positive Burst means the bucket never
// refills. ExternalLoad is the fraction (0 to 1) of the refill consumed by
// another client of the same tenant: the bucket refills at
// Rate*(1-ExternalLoad). RetryAfter adds a Retry-After header (whole
// seconds until one token is back, at least 1) to 429 answers.
type RateLimit struct {
	Burst        int
	Rate         float64
	RetryAfter   bool
	ExternalLoad float64
}

// UnlimitedBurst is the x-ratelimit-limit sent when there is no rate limit.
const UnlimitedBurst = 1_000_000

// neverFull is how far ahead x-ratelimit-reset points when the bucket does
// not refill.
const neverFull = 24 * time.Hour

// bucket is a token bucket driven by the times passed to it.
type bucket struct {
	mu     sync.Mutex
	cfg    RateLimit
	tokens float64
	last   time.Time
}

// verdict is the outcome of one draw from the bucket.
type verdict struct {
	ok         bool
	limit      int
	remaining  int
	reset      time.Time
	retryAfter time.Duration // set when !ok and the RetryAfter option is on
}

func newBucket(rl RateLimit, now time.Time) *bucket {
	b := &bucket{cfg: normalize(rl), last: now}
	b.tokens = float64(b.cfg.Burst)
	return b
}

func normalize(rl RateLimit) RateLimit {
	if rl.Burst <= 0 && rl.Rate > 0 {
		rl.Burst = max(1, int(math.Ceil(rl.Rate)))
	}
	rl.ExternalLoad = min(max(rl.ExternalLoad, 0), 1)
	return rl
}

func (b *bucket) unlimited() bool { return b.cfg.Burst <= 0 }

// rate is the refill seen by this client, in tokens per second.
func (b *bucket) rate() float64 {
	return max(b.cfg.Rate, 0) * (1 - b.cfg.ExternalLoad)
}

func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(float64(b.cfg.Burst), b.tokens+now.Sub(b.last).Seconds()*b.rate())
		b.last = now
	}
}

func (b *bucket) set(rl RateLimit, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasUnlimited := b.unlimited()
	if !wasUnlimited {
		b.refill(now)
	}
	b.cfg = normalize(rl)
	b.last = now
	if wasUnlimited {
		b.tokens = float64(b.cfg.Burst)
	} else {
		b.tokens = min(b.tokens, float64(b.cfg.Burst))
	}
}

// take draws one token at time now.
func (b *bucket) take(now time.Time) verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unlimited() {
		return verdict{ok: true, limit: UnlimitedBurst, remaining: UnlimitedBurst - 1, reset: now}
	}
	b.refill(now)
	// A tiny tolerance keeps float rounding from refusing a token that
	// has exactly refilled.
	const eps = 1e-9
	v := verdict{limit: b.cfg.Burst}
	if b.tokens >= 1-eps {
		b.tokens = max(b.tokens-1, 0)
		v.ok = true
	}
	v.remaining = int(math.Floor(b.tokens + eps))
	v.reset = now.Add(b.until(float64(b.cfg.Burst) - b.tokens))
	if !v.ok && b.cfg.RetryAfter {
		v.retryAfter = b.until(1 - b.tokens)
	}
	return v
}

// until is how long the bucket takes to gain n tokens.
func (b *bucket) until(n float64) time.Duration {
	if n <= 0 {
		return 0
	}
	r := b.rate()
	if r <= 0 {
		return neverFull
	}
	d := n / r * float64(time.Second)
	if d > float64(neverFull) {
		return neverFull
	}
	return time.Duration(math.Ceil(d))
}

// setHeaders writes the x-ratelimit-* headers (and Retry-After) of v.
func (v verdict) setHeaders(h http.Header) {
	// Lower-case names, as the real API sends them; Go clients
	// canonicalize them when reading.
	h["x-ratelimit-limit"] = []string{strconv.Itoa(v.limit)}
	h["x-ratelimit-remaining"] = []string{strconv.Itoa(v.remaining)}
	h["x-ratelimit-reset"] = []string{strconv.FormatInt(ceilUnix(v.reset), 10)}
	if v.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(v.retryAfter), 10))
	}
}

// ceilUnix is t in Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}
