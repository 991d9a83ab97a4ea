package ratelimit

import (
	"time"
)

// The hold-off: after an answer refusing a request for the rate limit, no
// request leaves until the tenant can take one again. It is shared by all
// workers, never shortened by a later refusal, and capped by MaxHold.

// holdOff is the shared hold-off after refusals.
type holdOff struct {
	until   time.Time // no request leaves before this instant
	jitter  bool      // each worker adds its own jitter to until
	limited int       // consecutive refusals, for holds without a reset time
}

// hold sets the shared hold-off after answer a refused a request for the
// rate limit, and lets the bucket model slow down (see bucket.rebuff).
//
// Once the tenant's rate is known, the hold-off ends when the tenant has
// refilled one token. Before that, it is estimated from what a said of the
// bucket (the missing tokens are back by its Reset); failing that it lasts
// until a.RetryAt, measured from a.Date when the tenant sent one so that
// clock skew does not matter, each worker adding a jitter of up to
// MinBackoff; without a usable RetryAt it lasts a backoff that grows with
// consecutive refusals. A hold never exceeds MaxHold and never shortens
// one already in force. (A passing refusal sets no hold: see observe.)
func (p *Pacer) hold(now time.Time, a Answer, unexplained bool) {
	p.stats.RateLimited++
	p.held.limited++
	jitter := false
	p.model.rebuff(now, unexplained)
	d, known := p.model.tokenTime()
	if !known {
		d = tokenWait(now, a)
	}
	if !known && d <= 0 {
		jitter = true
		if !a.RetryAt.IsZero() {
			from := now
			if !a.Date.IsZero() {
				from = a.Date
			}
			d = a.RetryAt.Sub(from)
		}
		if d <= 0 {
			d = Backoff(p.held.limited, p.cfg.MinBackoff, p.cfg.MaxBackoff, p.rnd)
		}
	}
	until := now.Add(min(d, p.cfg.MaxHold))
	if until.After(p.held.until) {
		p.stats.Hold += until.Sub(later(p.held.until, now))
		p.held.until = until
		p.held.jitter = jitter
		// The waiters in line leave it until the hold ends (see
		// Pacer.reset): each must look again, or it would sleep out
		// the wait its old reservation set, which may be far longer.
		p.notify()
	}
}

// tokenWait estimates, from what a refusal said of the tenant's bucket, how
// long the tenant takes to refill one token: the missing tokens are back by
// the reset time. The estimate errs long (the reset is rounded up, Date
// down). It returns 0 when the answer does not tell.
func tokenWait(now time.Time, a Answer) time.Duration {
	if a.Reset.IsZero() {
		return 0
	}
	missing := a.Limit - max(a.Remaining, 0)
	if missing <= 0 {
		return 0
	}
	from := now
	if !a.Date.IsZero() {
		from = a.Date
	}
	return a.Reset.Sub(from) / time.Duration(missing)
}

// holdDelay returns how long the hold-off still keeps w back at now.
func (p *Pacer) holdDelay(w *waiter, now time.Time) time.Duration {
	if p.held.until.After(now) && !p.held.until.Equal(w.seen) {
		w.seen, w.release = p.held.until, p.held.until
		if p.held.jitter {
			if !w.drawn {
				w.jitter = time.Duration(p.rnd.Int64N(int64(p.cfg.MinBackoff) + 1))
				w.drawn = true
			}
			w.release = w.release.Add(w.jitter)
		}
	}
	return w.release.Sub(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
