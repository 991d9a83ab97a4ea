// Package ratelimit paces every request linkbatch sends to the tenant and
// decides which failed requests are sent again.
//
// One [Pacer] is shared by all workers. It combines a token bucket (the
// client-side request rate) with a shared hold-off that a 429 answer sets:
// once the tenant says "too many requests", no worker sends anything until
// the tenant's reset time. [CheckRetry] is the retry policy and [Backoff] the
// pause between retries of transient failures; [Pacer.Do] ties them together.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/linkbatch/linkbatch/linker"
)

// Config sets how a [Pacer] paces and retries. Start from [DefaultConfig];
// zero values are not replaced by defaults (MaxRetries 0 means no retries).
type Config struct {
	// Rate is the number of requests per second for all workers together.
	Rate float64
	// Burst is how many requests may be sent at once after a quiet spell.
	Burst int
	// MaxRetries is how many times one call is retried after a transient
	// failure (5xx, 408, transport error); 429 answers do not count.
	MaxRetries int
	// MaxRateLimited is how many 429 answers one call absorbs before it
	// gives up.
	MaxRateLimited int
	// MinBackoff and MaxBackoff bound the pause between retries. MinBackoff
	// is also the largest jitter each worker adds to a 429 hold-off.
	MinBackoff, MaxBackoff time.Duration
	// MaxHold caps one 429 hold-off, in case a reset lies far in the future.
	MaxHold time.Duration
	// Seed seeds the jitter; equal seeds give equal jitter sequences.
	Seed uint64
}

// DefaultConfig returns the defaults: 2 requests/s with a burst of 2 (the
// Management API limit of the smallest plan), 5 retries, 30 absorbed 429s,
// backoff between 250ms and 30s, holds of at most 60s and seed 0.
func DefaultConfig() Config {
	return Config{
		Rate:           2,
		Burst:          2,
		MaxRetries:     5,
		MaxRateLimited: 30,
		MinBackoff:     250 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
		MaxHold:        60 * time.Second,
	}
}

// Validate returns an error naming every setting that is out of range, or
// nil.
func (c Config) Validate() error {
	var errs []error
	if !(c.Rate > 0) || math.IsInf(c.Rate, 1) {
		errs = append(errs, fmt.Errorf("rate must be a finite number > 0, got %v", c.Rate))
	}
	if c.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst must be >= 1, got %d", c.Burst))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries must be >= 0, got %d", c.MaxRetries))
	}
	if c.MaxRateLimited < 0 {
		errs = append(errs, fmt.Errorf("max rate-limited answers must be >= 0, got %d", c.MaxRateLimited))
	}
	if c.MinBackoff <= 0 {
		errs = append(errs, fmt.Errorf("min backoff must be > 0, got %v", c.MinBackoff))
	}
	if c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("max backoff %v is below min backoff %v", c.MaxBackoff, c.MinBackoff))
	}
	if c.MaxHold <= 0 {
		errs = append(errs, fmt.Errorf("max hold must be > 0, got %v", c.MaxHold))
	}
	if len(errs) > 0 {
		return fmt.Errorf("ratelimit config: %w", errors.Join(errs...))
	}
	return nil
}

// Stats counts what a [Pacer] saw.
type Stats struct {
	Requests    int64         // attempts reported to Observe
	RateLimited int64         // 429 answers among them
	Retries     int64         // attempts Do made beyond the first of each call
	Hold        time.Duration // wall-clock time covered by 429 hold-offs
}

// Pacer paces requests to the tenant and retries them. It is safe for
// concurrent use by any number of workers and starts no goroutines.
//
// Every request goes through [Pacer.Wait] before it is sent and reports its
// outcome to [Pacer.Observe] afterwards; [Pacer.Do] does both, with retries.
// Observe is the only way responses influence pacing.
type Pacer struct {
	cfg Config
	lim *rate.Limiter

	mu        sync.Mutex
	rnd       *rand.Rand // jitter; not safe for concurrent use, guarded by mu
	holdUntil time.Time  // no request leaves before this instant
	limited   int        // consecutive 429s, for holds without a reset time
	stats     Stats
}

// New returns a Pacer for cfg, or the error of cfg.Validate.
func New(cfg Config) (*Pacer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pacer{
		cfg: cfg,
		lim: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}, nil
}

// Limit returns the current request rate, in requests per second.
func (p *Pacer) Limit() float64 { return float64(p.lim.Limit()) }

// Burst returns the current burst size.
func (p *Pacer) Burst() int { return p.lim.Burst() }

// Stats returns a snapshot of the counters.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Wait blocks until one request may be sent: it waits out the shared 429
// hold-off (plus a jitter of up to MinBackoff of its own, so held workers do
// not all wake at once), then takes a token from the rate limiter. A hold-off
// set while it queued for the token is waited out too. Wait returns
// ctx.Err() as soon as ctx is done, giving its token back if it had reserved
// one; it does not fail early when ctx's deadline is nearer than the wait.
func (p *Pacer) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.waitHold(ctx); err != nil {
		return err
	}
	r := p.lim.Reserve()
	if !r.OK() {
		return fmt.Errorf("ratelimit: no token with burst %d", p.lim.Burst())
	}
	if err := sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return err
	}
	return p.waitHold(ctx)
}

// waitHold returns once no hold-off is in force, or ctx.Err().
func (p *Pacer) waitHold(ctx context.Context) error {
	var jitter time.Duration
	drawn := false
	for {
		p.mu.Lock()
		d := time.Until(p.holdUntil)
		if d > 0 && !drawn {
			jitter = time.Duration(p.rnd.Int64N(int64(p.cfg.MinBackoff) + 1))
			drawn = true
		}
		p.mu.Unlock()
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d+jitter); err != nil {
			return err
		}
	}
}

// Observe takes the outcome of one attempt: resp and err as the request
// returned them. A *linker.RateLimitError (wrapped or not) holds every worker
// back until its Reset, measured from resp.Date when the server sent one so
// that clock skew does not matter; without a usable Reset the hold lasts a
// backoff that grows with consecutive 429s. A hold never exceeds MaxHold and
// never shortens one already in force. Observe is safe for concurrent use.
func (p *Pacer) Observe(resp *linker.Response, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	var rl *linker.RateLimitError
	if !errors.As(err, &rl) {
		p.limited = 0
		return
	}
	p.stats.RateLimited++
	p.limited++
	now := time.Now()
	var d time.Duration
	if !rl.Reset.IsZero() {
		from := now
		if resp != nil && !resp.Date.IsZero() {
			from = resp.Date
		}
		d = rl.Reset.Sub(from)
	}
	if d <= 0 {
		d = Backoff(p.limited, p.cfg.MinBackoff, p.cfg.MaxBackoff, p.rnd)
	}
	until := now.Add(min(d, p.cfg.MaxHold))
	if until.After(p.holdUntil) {
		p.stats.Hold += until.Sub(later(p.holdUntil, now))
		p.holdUntil = until
	}
}

// Do runs op until it succeeds, fails for good, or runs out of retries,
// pacing every attempt with Wait and reporting it to Observe. A 429 counts
// against MaxRateLimited and is followed by the shared hold-off; any other
// retryable failure (see [CheckRetry]) counts against MaxRetries and is
// followed by a [Backoff] pause. op receives ctx; a per-attempt timeout is
// op's to set. Do is safe for concurrent use.
//
// Do returns the number of attempts made, the last response and:
//   - nil when the last attempt succeeded, even if ctx is done by then;
//   - the last error as is when it is final (e.g. a 4xx *linker.APIError);
//   - an error matching both [ErrRetriesExhausted] and the last error when
//     the retry budget ran out;
//   - when ctx ended the calls, an error matching ctx.Err() (e.g.
//     context.Canceled) and, if there was one, the last retryable error.
func (p *Pacer) Do(ctx context.Context, op func(ctx context.Context) (*linker.Response, error)) (attempts int, resp *linker.Response, err error) {
	var retries, limited int
	for {
		if werr := p.Wait(ctx); werr != nil {
			return attempts, resp, stopped(werr, attempts, err)
		}
		attempts++
		resp, err = op(ctx)
		p.Observe(resp, err)
		if !CheckRetry(ctx, resp, err) {
			if err != nil && ctx.Err() != nil && retryable(err) {
				return attempts, resp, stopped(ctx.Err(), attempts, err)
			}
			return attempts, resp, err
		}
		var rl *linker.RateLimitError
		if errors.As(err, &rl) {
			if limited++; limited > p.cfg.MaxRateLimited {
				return attempts, resp, fmt.Errorf("%w after %d attempts (%d rate-limited): %w", ErrRetriesExhausted, attempts, limited, err)
			}
		} else {
			if retries++; retries > p.cfg.MaxRetries {
				return attempts, resp, fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempts, err)
			}
			p.mu.Lock()
			d := Backoff(retries, p.cfg.MinBackoff, p.cfg.MaxBackoff, p.rnd)
			p.mu.Unlock()
			if serr := sleep(ctx, d); serr != nil {
				return attempts, resp, stopped(serr, attempts, err)
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

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
