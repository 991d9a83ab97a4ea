package ratelimit

import (
	"context"
	"math"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// The gate lets requests through one at a time, first come first served,
// at the rate and burst the bucket model sets (see bucket.pace), from the
// level the model last read from the tenant's answers. A hold-off after a
// refusal (see hold.go) keeps every waiter back until it ends. All of it
// runs under Pacer.mu; only wait blocks, and never while holding it. A
// request the gate lets through then waits on the shared limiter, when
// Config.Shared sets one (see shared.go).

// gate is the limiter every request waits on and the line of waiters.
type gate struct {
	// lim is replaced, never changed behind a waiter's back: each waiter
	// in line holds a reservation on the current lim (see Pacer.reset).
	lim     *rate.Limiter
	queue   []*waiter     // waiters holding a reservation on lim, in order
	changed chan struct{} // closed when waits may have become shorter
}

func newGateFor(r rate.Limit, b int) gate {
	return gate{lim: rate.NewLimiter(r, b), changed: make(chan struct{})}
}

// waiter is one wait in line.
type waiter struct {
	r       *rate.Reservation // on the current gate; nil while held back
	drawn   bool
	jitter  time.Duration
	seen    time.Time // the hold-off release was computed for
	release time.Time // end of that hold-off for this waiter, jitter included
}

// wait blocks until one request may be sent and returns its grant: it
// waits out the shared hold-off (plus, when the hold-off came from the
// tenant's reset time, a jitter of up to MinBackoff of its own, so held
// workers do not all wake at once), then takes a token from the gate,
// first come first served. A hold-off or a slower pace set while it waited
// applies to it too, and a faster one lets it go sooner. wait returns
// ctx.Err() as soon as ctx is done, having taken nothing; it does not fail
// early when ctx's deadline is nearer than the wait.
func (p *Pacer) wait(ctx context.Context) (grant, error) {
	if err := ctx.Err(); err != nil {
		return grant{}, err
	}
	w := &waiter{}
	waited := false
	p.mu.Lock()
	for {
		now := time.Now()
		d := p.holdDelay(w, now)
		if d <= 0 {
			if w.r == nil {
				w.r = p.gate.lim.ReserveN(now, 1)
				p.gate.queue = append(p.gate.queue, w)
			}
			if d = w.r.DelayFrom(now); d <= 0 {
				p.dequeue(w)
				if p.cfg.Shared != nil {
					return p.passShared(ctx, waited)
				}
				g := p.model.let(now, waited)
				p.mu.Unlock()
				return g, nil
			}
		}
		waited = true
		changed := p.gate.changed
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			p.mu.Lock()
			p.leave(w, time.Now())
			p.mu.Unlock()
			return grant{}, ctx.Err()
		case <-t.C:
		case <-changed:
			t.Stop()
		}
		p.mu.Lock()
	}
}

// passShared lets a request, through the gate, wait on the shared limiter (see
// shared.go) and returns its grant, or ctx.Err() having given its token
// back to the gate. Called with p.mu held; returns with it released.
func (p *Pacer) passShared(ctx context.Context, waited bool) (grant, error) {
	p.mu.Unlock()
	err := p.waitShared(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if err != nil {
		p.reset(now, p.level(now)+1)
		return grant{}, err
	}
	return p.model.let(now, waited), nil
}

func (p *Pacer) dequeue(w *waiter) {
	if i := slices.Index(p.gate.queue, w); i >= 0 {
		p.gate.queue = slices.Delete(p.gate.queue, i, i+1)
	}
}

// leave takes w out of line and gives its token back to the gate.
func (p *Pacer) leave(w *waiter, now time.Time) {
	if w.r == nil {
		return
	}
	level := p.level(now)
	p.dequeue(w)
	w.r = nil
	p.reset(now, level)
}

// level returns the tokens in the gate at now, those reserved by the
// waiters in line given back.
func (p *Pacer) level(now time.Time) float64 {
	return min(p.gate.lim.TokensAt(now)+float64(len(p.gate.queue)), float64(p.gate.lim.Burst()))
}

// reset brings the gate's rate and burst in line with the caps and sets its
// level at now to level (NaN: as it is, the tokens reserved by the waiters
// in line given back). The waiters in line then reserve again, in order, on
// a new gate, or, during a hold-off, leave the line until it ends; those
// that may go sooner are woken. With no one in line and the level as it
// is, the gate is only retuned.
func (p *Pacer) reset(now time.Time, level float64) {
	r, b := p.model.pace()
	if math.IsNaN(level) {
		level = p.level(now)
	}
	level = min(level, float64(b))
	if p.held.until.After(now) {
		for _, w := range p.gate.queue {
			w.r = nil
		}
		p.gate.queue = p.gate.queue[:0]
	}
	if len(p.gate.queue) == 0 && math.Abs(level-min(p.gate.lim.TokensAt(now), float64(b))) < 1e-9 {
		if p.gate.lim.Limit() != r {
			p.gate.lim.SetLimitAt(now, r)
		}
		if p.gate.lim.Burst() != b {
			p.gate.lim.SetBurstAt(now, b)
		}
		return
	}
	p.gate.lim = newLimiter(now, r, b, level)
	sooner := false
	for _, w := range p.gate.queue {
		before := w.r.DelayFrom(now)
		w.r = p.gate.lim.ReserveN(now, 1)
		sooner = sooner || w.r.DelayFrom(now) < before
	}
	if sooner {
		p.notify()
	}
}

// newLimiter returns a limiter of rate r and burst b that holds level tokens
// (at most b, possibly fewer than 0) at now. A new limiter starts full; it
// is drained by whole tokens a little before now, so that its refill until
// now makes up the fraction.
func newLimiter(now time.Time, r rate.Limit, b int, level float64) *rate.Limiter {
	g := rate.NewLimiter(r, b)
	missing := float64(b) - level
	if missing <= 0 {
		return g
	}
	n := int(math.Ceil(missing))
	at := now.Add(-time.Duration(math.Round((float64(n) - missing) / float64(r) * float64(time.Second))))
	for n > 0 {
		k := min(n, b)
		g.ReserveN(at, k)
		n -= k
	}
	return g
}

// notify wakes every waiter to look again.
func (p *Pacer) notify() {
	close(p.gate.changed)
	p.gate.changed = make(chan struct{})
}
