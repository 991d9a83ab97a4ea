package ratelimit

import (
	"math"
	"time"
)

// bucket is a token bucket driven by the times passed to it. Its level may
// be negative: a debt of tokens that requests already sent will consume.
// A rate of +Inf means the bucket never holds anything back. The zero value
// is unusable; bucket is not safe for concurrent use (the Pacer guards it).
type bucket struct {
	rate   float64   // tokens per second, > 0 or +Inf
	cap    float64   // most tokens the bucket holds, >= 1
	tokens float64   // level at last
	last   time.Time // when tokens was last brought up to date
}

func newBucket(rate, capacity float64, now time.Time) bucket {
	return bucket{rate: rate, cap: capacity, tokens: capacity, last: now}
}

func (b *bucket) unlimited() bool { return math.IsInf(b.rate, 1) }

// level returns the number of tokens at now.
func (b *bucket) level(now time.Time) float64 {
	if b.unlimited() {
		return math.Inf(1)
	}
	t := b.tokens
	if now.After(b.last) && t < b.cap {
		t = min(b.cap, t+now.Sub(b.last).Seconds()*b.rate)
	}
	return t
}

// advance brings the level up to date at now.
func (b *bucket) advance(now time.Time) {
	if b.unlimited() {
		return
	}
	b.tokens = b.level(now)
	if now.After(b.last) {
		b.last = now
	}
}

// delay returns how long until the k-th waiter in line (k >= 1) may take a
// token, each waiter ahead of it taking one first.
func (b *bucket) delay(now time.Time, k int) time.Duration {
	if b.unlimited() {
		return 0
	}
	missing := float64(k) - b.level(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing / b.rate * float64(time.Second)))
}

// take spends one token at now.
func (b *bucket) take(now time.Time) {
	if b.unlimited() {
		return
	}
	b.advance(now)
	b.tokens--
}

// setLevel sets the level at now, at most cap.
func (b *bucket) setLevel(now time.Time, tokens float64) {
	if b.unlimited() {
		return
	}
	b.advance(now)
	b.tokens = min(tokens, b.cap)
}

// setRate changes the refill rate from now on. Leaving +Inf starts the
// bucket full.
func (b *bucket) setRate(now time.Time, rate float64) {
	if b.unlimited() {
		if !math.IsInf(rate, 1) {
			b.rate, b.tokens, b.last = rate, b.cap, now
		}
		return
	}
	b.advance(now)
	b.rate = rate
}

// setCap changes the capacity from now on; the level does not grow, and
// shrinks to fit.
func (b *bucket) setCap(now time.Time, capacity float64) {
	b.advance(now)
	b.cap = capacity
	b.tokens = min(b.tokens, capacity)
}
