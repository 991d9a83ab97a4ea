package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The retry loop: Do runs one call through the gate until it succeeds,
// fails for good or runs out of retries, and Backoff spaces the retries of
// transient failures. Which errors are transient is the caller's policy
// (the retryable func given to New); refusals for the rate limit are told
// by the Answer and always retried, after the shared hold-off.

// ErrRetriesExhausted marks the error [Pacer.Do] returns when it gave up on
// an error that was still retryable: MaxRetries transient failures or
// MaxRateLimited refusals were used up. The last attempt's error is wrapped
// alongside it, so errors.As still finds its typed error.
var ErrRetriesExhausted = errors.New("ratelimit: retries exhausted")

// Do runs op until it succeeds, fails for good, or runs out of retries,
// pacing every attempt through the gate and learning from the [Answer] op
// returns. An attempt op reports as refused for the rate limit counts
// against MaxRateLimited and is followed by the shared hold-off; any other
// failure the Pacer's retryable policy accepts counts against MaxRetries
// and is followed by a [Backoff] pause. No attempt is made once ctx is
// done. op receives ctx; a per-attempt timeout is op's to set. Do is safe
// for concurrent use.
//
// Do returns the number of attempts made and:
//   - nil when the last attempt succeeded, even if ctx is done by then;
//   - the last error as is when it is final (not refused, not retryable);
//   - an error matching both [ErrRetriesExhausted] and the last error when
//     the retry budget ran out;
//   - when ctx ended the calls, an error matching ctx.Err() (e.g.
//     context.Canceled) and, if there was one, the last retryable error.
func (p *Pacer) Do(ctx context.Context, op func(ctx context.Context) (Answer, error)) (attempts int, err error) {
	var retries, limited int
	for {
		g, werr := p.wait(ctx)
		if werr != nil {
			return attempts, stopped(werr, attempts, err)
		}
		attempts++
		var a Answer
		a, err = op(ctx)
		passing := p.observe(g, a)
		if err == nil || !a.RateLimited && !p.retryable(err) {
			return attempts, err
		}
		if ctx.Err() != nil {
			return attempts, stopped(ctx.Err(), attempts, err)
		}
		if a.RateLimited {
			if limited++; limited > p.cfg.MaxRateLimited {
				return attempts, fmt.Errorf("%w after %d attempts (%d rate-limited): %w", ErrRetriesExhausted, attempts, limited, err)
			}
			if passing {
				// A refusal that says its bucket is full again: this
				// call alone pauses, growing with its own refusals.
				p.mu.Lock()
				d := Backoff(limited, p.cfg.MinBackoff, p.cfg.MaxBackoff, p.rnd)
				p.mu.Unlock()
				if serr := sleep(ctx, d); serr != nil {
					return attempts, stopped(serr, attempts, err)
				}
			}
		} else {
			if retries++; retries > p.cfg.MaxRetries {
				return attempts, fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempts, err)
			}
			p.mu.Lock()
			d := Backoff(retries, p.cfg.MinBackoff, p.cfg.MaxBackoff, p.rnd)
			p.mu.Unlock()
			if serr := sleep(ctx, d); serr != nil {
				return attempts, stopped(serr, attempts, err)
			}
		}
		p.mu.Lock()
		p.stats.Retries++
		p.mu.Unlock()
	}
}

// stopped is the error of a Do that ctx ended: ctxErr, with the last
// attempt's error when there was one.
func stopped(ctxErr error, attempts int, last error) error {
	switch {
	case last == nil:
		return ctxErr
	case errors.Is(last, ctxErr):
		return last
	}
	return fmt.Errorf("%w after %d attempts: %w", ctxErr, attempts, last)
}

// sleep waits for d, or returns ctx.Err() if ctx is done first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
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
