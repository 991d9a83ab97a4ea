package ratelimit

import (
	"context"
	"math"
	"time"
)

// Shared is a rate limit held outside the process and shared by every
// process that sends to the same tenant, such as several linkbatch
// consumers of one queue. When [Config.Shared] is set, every request,
// once the Pacer's own gate lets it through, also waits on it.
//
// Wait blocks until one request may be sent at rate requests per second
// with bursts of burst, or returns an error: ctx.Err() as soon as ctx is
// done, or the store's failure. rate and burst are the Pacer's current
// view of the tenant's limit: Share of the whole refill rate and bucket
// size its answers taught (the largest of the rates it learned, never what
// other clients leave it alone), capped by Config.Rate and Burst; until
// the rate is known, Config.Rate and the gate's burst, or, with no
// Config.Rate, no shared wait at all (the answers pace each Pacer). An
// implementation applies the latest ones it is given, and should ask again
// within a fraction of a second rather than sleep out a wait computed for
// an older, lower rate. Wait must be safe for concurrent use.
//
// A request does not wait on it while the last answer shows the tenant's
// bucket at least half full (tokens go unused: the limit is below what the
// tenant takes, and sending more is how the Pacers learn it), nor on a
// bucket that refills whole in under a second (its whole-second reset
// times cannot show its refill apart from what the others take, so a
// shared limit would err low).
//
// A store that fails does not stop the run: the request goes ahead at the
// Pacer's own pace, whose header feedback stays the safety net (a refusal
// holds its gate back whatever the shared limiter allowed). Reporting the
// failure is the implementation's business.
type Shared interface {
	Wait(ctx context.Context, rate float64, burst int) error
}

// sharedLimit returns the rate and burst a request waits at on the
// shared limiter (see [Shared]); an infinite rate when it does not wait.
// Called with p.mu held.
func (p *Pacer) sharedLimit() (float64, int) {
	r, b := p.model.pace()
	rate, burst := float64(r), b
	if p.cfg.Rate == 0 {
		// Until the tenant's rate is learned, the gate goes by the levels
		// its answers show, faster than its starting pace; holding every
		// process at that pace would keep them from learning the rate.
		rate = math.Inf(1)
	}
	lr, size, known := p.model.refill()
	switch {
	case !known:
		return rate, burst
	case float64(size)/lr < sharedMinRefill.Seconds():
		// A bucket refilled faster than the whole seconds of its reset
		// times can show: no process can tell its refill from what the
		// others leave, so the limit they would share errs low.
		return math.Inf(1), burst
	case p.model.fullness() >= 0.5:
		// Tokens go unused: the tenant takes more than the limit holds
		// the processes to, and sending more is how they learn it.
		return math.Inf(1), burst
	}
	share := p.cfg.Share
	if share == 0 {
		share = 1
	}
	rate, burst = share*lr, max(1, int(share*float64(size)))
	if p.cfg.Rate > 0 {
		rate = min(rate, p.cfg.Rate)
	}
	if p.cfg.Burst > 0 {
		burst = min(burst, p.cfg.Burst)
	}
	return rate, burst
}

// sharedMinRefill is the least time a bucket takes to refill whole for
// the processes to share a limit on it.
const sharedMinRefill = time.Second

// waitShared waits on the shared limiter, if any, at the limit sharedLimit
// returns. It returns ctx.Err() when ctx ended the wait, and nil otherwise:
// a failing store lets the request go (see [Shared]). It is called without
// p.mu held.
func (p *Pacer) waitShared(ctx context.Context) error {
	if p.cfg.Shared == nil {
		return nil
	}
	p.mu.Lock()
	rate, burst := p.sharedLimit()
	p.mu.Unlock()
	if math.IsInf(rate, 1) || rate <= 0 {
		return nil
	}
	if err := p.cfg.Shared.Wait(ctx, rate, burst); err != nil {
		return ctx.Err()
	}
	return nil
}
