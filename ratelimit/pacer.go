// Package ratelimit paces every request linkbatch sends to the tenant and
// decides which failed requests are sent again.
//
// One [Pacer] is shared by all workers, for reads and writes alike. Unless
// told a rate, it learns the tenant's Management API limit from the
// x-ratelimit-* headers of the answers: it starts at the smallest plan's
// level, spends the tenant's burst at once as soon as the bucket size is
// known, then sends at the refill rate it measures, keeping its shared
// golang.org/x/time/rate limiter no fuller than the tenant's bucket. A 429 answer holds every worker back until the
// tenant can take the next request. [CheckRetry] is the retry policy and
// [Backoff] the pause between retries of transient failures; [Pacer.Do] ties
// them together.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/linkbatch/linkbatch/linker"
)

const (
	// startRate is the pace, in requests per second, until the tenant's
	// refill rate is learned: the smallest plan's sustained limit.
	startRate = 2
	// minRate is the slowest pace: other clients may take the whole
	// refill for a while, but a request now and then shows when they stop.
	minRate = 0.1
	// marginStep is how many tokens each 429 adds to the cushion the
	// Pacer leaves in the tenant's bucket; marginDecay is how much each
	// accepted request takes off again.
	marginStep  = 1
	marginDecay = 1.0 / 512
	// Each 429 also slows the pace by slowdown, down to minFactor of the
	// learned rate; each accepted request gives back speedup of it.
	slowdown  = 0.8
	minFactor = 0.25
	speedup   = 1.0 / 512
	// refusedKept bounds the list of recent 429 answers kept by sequence.
	refusedKept = 1024
	// latenciesKept is how many recent request latencies are kept.
	latenciesKept = 64
	// forgetAfter is when a request let through is taken for one whose
	// answer will never be reported.
	forgetAfter = 5 * time.Minute
	// grossCapRefill is the least time, in seconds, the tenant's bucket
	// takes to refill for its reset times to cap the pace.
	grossCapRefill = 5
	// probeAnswers is the least number of answers, and probeSpan the
	// least time in seconds of refill, that one look at the slack left in
	// the tenant's bucket spans (see Pacer.probe).
	probeAnswers = 8
	probeSpan    = 1
)

// Config sets how a [Pacer] paces and retries. Start from [DefaultConfig];
// zero values of the retry settings are not replaced by defaults
// (MaxRetries 0 means no retries).
type Config struct {
	// Rate is the most requests per second for all workers together; 0
	// means no cap of its own: learn the tenant's rate. Either way the
	// Pacer slows down to what the tenant shows it can take.
	Rate float64
	// Burst is the most requests sent at once after a quiet spell; 0 means
	// the tenant's bucket size, once its answers have shown it (1 while
	// they have not).
	Burst int
	// Share is the fraction of the tenant's learned rate and bucket that
	// the Pacer uses, leaving the rest to other clients of the tenant;
	// 0 means 1 (all of it).
	Share float64
	// MaxRetries is how many times one call is retried after a transient
	// failure (5xx, 408, transport error); 429 answers do not count.
	MaxRetries int
	// MaxRateLimited is how many 429 answers one call absorbs before it
	// gives up.
	MaxRateLimited int
	// MinBackoff and MaxBackoff bound the pause between retries. MinBackoff
	// is also the largest jitter each worker adds to a 429 hold-off whose
	// length came from the tenant's reset time.
	MinBackoff, MaxBackoff time.Duration
	// MaxHold caps one 429 hold-off, in case a reset lies far in the future.
	MaxHold time.Duration
	// Seed seeds the jitter; equal seeds give equal jitter sequences.
	Seed uint64
}

// DefaultConfig returns the defaults: the rate and burst learned from the
// tenant (Rate and Burst 0), all of it used (Share 1), 7 retries, 30
// absorbed 429s, backoff between 100ms and 30s, holds of at most 60s and
// seed 0. A lone 5xx is thus retried within 200ms (the gate adds its own
// wait), while a call gives up only after 12.7s to 25.4s of pauses.
func DefaultConfig() Config {
	return Config{
		Share:          1,
		MaxRetries:     7,
		MaxRateLimited: 30,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
		MaxHold:        60 * time.Second,
	}
}

// Validate returns an error naming every setting that is out of range, or
// nil.
func (c Config) Validate() error {
	var errs []error
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 1) {
		errs = append(errs, fmt.Errorf("rate must be 0 (learn it) or a finite number > 0, got %v", c.Rate))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst must be 0 (learn it) or >= 1, got %d", c.Burst))
	}
	if !(c.Share >= 0 && c.Share <= 1) {
		errs = append(errs, fmt.Errorf("share must be within (0, 1] (0 means 1), got %v", c.Share))
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
// outcome to [Pacer.Observe] afterwards, exactly once; [Pacer.Do] does both,
// with retries, and knows which answer belongs to which request. Observe is
// the only way responses influence pacing.
//
// Requests are let through, first come first served, by one
// golang.org/x/time/rate limiter shared by all workers: the gate. Its rate
// and burst are the smaller of two sets of caps. The policy caps are
// Config.Rate and Burst when set, and Share of the tenant's learned rate and
// bucket size. The mirror caps model the tenant's own bucket: until the
// tenant has answered they let one request through at a time, at
// Config.Rate or, when that is 0, 2 per second; from then on the burst is
// the tenant's bucket size (times Share) and the rate the refill learned
// from the answers (see [Pacer.Learned]), 2 per second until then. The
// gate's level follows the x-ratelimit-remaining of the latest answers,
// less the requests still pending that the tenant may have counted after
// them, plus the refill since, so the tenant's whole bucket is spent at once
// and the Pacer never thinks it fuller than the tenant says, save for the
// tokens its answers show it leaves unused (see probe); it is never
// raised above what the policy caps alone would allow. When the tenant's
// first answer carries no rate-limit headers and Config.Rate is set, the
// mirror is switched off and the configured rate and burst apply as they
// are.
type Pacer struct {
	cfg   Config
	share float64

	mu  sync.Mutex
	rnd *rand.Rand // jitter; not safe for concurrent use, guarded by mu
	// gate is the limiter every request waits on. It is replaced, never
	// changed behind a waiter's back: each waiter in line holds a
	// reservation on the current gate (see reset).
	gate *rate.Limiter
	// allowance is the policy caps alone: a limiter no one waits on, charged
	// for every request let through, that bounds how far the gate is raised.
	// It is nil while there are no policy caps.
	allowance  *rate.Limiter
	policyRate float64 // +Inf while there are no policy caps
	policyCap  float64
	mirrorRate float64 // the tenant's refill usable by this Pacer
	mirrorCap  float64 // the tenant's bucket size usable by this Pacer
	mirroring  bool    // the mirror caps are in force
	seen       bool    // an answer carried x-ratelimit-* headers
	limit      int     // the tenant's bucket size, 0 until seen
	est        *estimator
	margin     float64         // tokens left in the tenant's bucket as a cushion
	slack      float64         // tokens the answers showed unused, added to the gate's level
	probeFrom  int64           // slack is looked for in answers to requests after this one
	probeN     int             // answers looked at since probeFrom
	probeMin   int             // the least remaining among them
	factor     float64         // share of the learned rate paced at, after 429s
	queue      []*waiter       // waiters holding a reservation on the gate, in order
	changed    chan struct{}   // closed when waits may have become shorter
	sent       int64           // requests let through; the last one's sequence number
	pending    []grant         // requests let through, answer not reported yet
	readings   []reading       // of recent answers with rate-limit headers
	latencies  []time.Duration // of recent requests, newest last
	refused    []int64         // sequence numbers of recent 429 answers, ascending
	nRefused   int64           // 429 answers in all

	holdUntil  time.Time // no request leaves before this instant
	holdJitter bool      // each worker adds its own jitter to holdUntil
	limited    int       // consecutive 429s, for holds without a reset time
	stats      Stats
}

// waiter is one Wait in line.
type waiter struct {
	r       *rate.Reservation // on the current gate; nil while held back
	drawn   bool
	jitter  time.Duration
	seen    time.Time // the hold-off release was computed for
	release time.Time // end of that hold-off for this waiter, jitter included
}

// grant is one request let through: its sequence number, when, and
// whether the gate held it back first (the gate, not the tenant's bucket,
// set its time).
type grant struct {
	seq    int64
	at     time.Time
	waited bool
}

// reading is what one answer said of the tenant's bucket.
type reading struct {
	arrived   time.Time
	handled   time.Time // when the tenant handled the request, estimated
	sent      time.Time // when the request was let through; zero if unknown
	remaining float64
}

// New returns a Pacer for cfg, or the error of cfg.Validate.
func New(cfg Config) (*Pacer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pacer{
		cfg:        cfg,
		share:      cfg.Share,
		rnd:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		est:        newEstimator(),
		changed:    make(chan struct{}),
		mirroring:  true,
		factor:     1,
		policyRate: math.Inf(1),
		policyCap:  1,
		mirrorRate: startRate,
		mirrorCap:  1,
	}
	if p.share == 0 {
		p.share = 1
	}
	if cfg.Rate > 0 {
		p.policyRate, p.policyCap = cfg.Rate, float64(max(cfg.Burst, 1))
		p.allowance = rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.Burst, 1))
		p.mirrorRate = cfg.Rate
	}
	r, b := p.pace()
	p.gate = rate.NewLimiter(r, b)
	return p, nil
}

// pace returns the gate's rate and burst: the smaller of the policy and
// the mirror caps.
func (p *Pacer) pace() (rate.Limit, int) {
	r, b := p.policyRate, math.Inf(1)
	if !math.IsInf(r, 1) {
		b = p.policyCap
	}
	if p.mirroring {
		r, b = min(r, p.mirrorRate), min(b, p.mirrorCap)
	}
	if math.IsInf(b, 1) {
		b = 1
	}
	return rate.Limit(r), max(1, int(b))
}

// Limit returns the current pace, in requests per second: the configured
// Rate, or the rate learned from the tenant when that is lower.
func (p *Pacer) Limit() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limitLocked()
}

func (p *Pacer) limitLocked() float64 {
	r := p.policyRate
	// Below a configured rate, a rate not learned yet only paces between
	// answers; the answers show what the tenant can take.
	if p.mirroring && (math.IsInf(r, 1) || p.est.net().known) {
		r = min(r, p.mirrorRate)
	}
	return r
}

// Burst returns the current burst size: 1 until the tenant has shown its
// bucket size, then the smaller of that (times Share) and the configured
// Burst.
func (p *Pacer) Burst() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, b := p.pace()
	return b
}

// Learned returns what the tenant's answers have shown of its bucket: the
// refill rate in requests per second, the bucket size (0 until seen), and
// whether the rate is known precisely enough to pace by. Other clients of
// the tenant spend part of the refill; the rate left to this Pacer is what
// [Pacer.Limit] reports.
func (p *Pacer) Learned() (rate float64, burst int, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate, known = p.est.learned()
	return rate, p.limit, known && p.limit > 0
}

// Concurrency returns how many requests should be in flight to keep up the
// pace when a request takes latency: a quarter more than pace times latency,
// rounded up, plus one, so that a full tenant bucket is spent quickly too;
// at least 1 and at most maxInFlight when that is > 0. Until the tenant's
// rate is known it returns maxInFlight (when > 0): the Pacer holds back what
// the tenant cannot take, and needs requests in flight to measure its rate.
// Callers that size a worker pool may ask again as the pace is learned;
// workers beyond the need only wait in Wait.
func (p *Pacer) Concurrency(latency time.Duration, maxInFlight int) int {
	p.mu.Lock()
	rate := p.limitLocked()
	unknown := p.mirroring && !p.est.net().known
	p.mu.Unlock()
	if unknown && maxInFlight > 0 {
		return maxInFlight
	}
	return concurrency(rate, latency, maxInFlight)
}

func concurrency(rate float64, latency time.Duration, most int) int {
	n := 1
	if latency > 0 && rate > 0 && !math.IsInf(rate, 1) {
		n = int(math.Ceil(1.25*rate*latency.Seconds())) + 1
	}
	if most > 0 {
		n = min(n, most)
	}
	return max(n, 1)
}

// Stats returns a snapshot of the counters.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Wait blocks until one request may be sent: it waits out the shared 429
// hold-off (plus, when the hold-off came from the tenant's reset time, a
// jitter of up to MinBackoff of its own, so held workers do not all wake at
// once), then takes a token from the gate, first come first served. A
// hold-off or a slower pace set while it waited applies to it too, and a
// faster one lets it go sooner. Wait returns ctx.Err() as soon as ctx is
// done, having taken nothing; it does not fail early when ctx's deadline is
// nearer than the wait.
func (p *Pacer) Wait(ctx context.Context) error {
	_, err := p.wait(ctx)
	return err
}

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
				w.r = p.gate.ReserveN(now, 1)
				p.queue = append(p.queue, w)
			}
			if d = w.r.DelayFrom(now); d <= 0 {
				p.dequeue(w)
				if p.allowance != nil {
					p.allowance.ReserveN(now, 1)
				}
				p.sent++
				g := grant{seq: p.sent, at: now, waited: waited}
				p.pending = append(p.pending, g)
				p.mu.Unlock()
				return g, nil
			}
		}
		waited = true
		changed := p.changed
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

// holdDelay returns how long the 429 hold-off still keeps w back at now.
func (p *Pacer) holdDelay(w *waiter, now time.Time) time.Duration {
	if p.holdUntil.After(now) && !p.holdUntil.Equal(w.seen) {
		w.seen, w.release = p.holdUntil, p.holdUntil
		if p.holdJitter {
			if !w.drawn {
				w.jitter = time.Duration(p.rnd.Int64N(int64(p.cfg.MinBackoff) + 1))
				w.drawn = true
			}
			w.release = w.release.Add(w.jitter)
		}
	}
	return w.release.Sub(now)
}

func (p *Pacer) dequeue(w *waiter) {
	if i := slices.Index(p.queue, w); i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
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
	return min(p.gate.TokensAt(now)+float64(len(p.queue)), float64(p.gate.Burst()))
}

// reset brings the gate's rate and burst in line with the caps and sets its
// level at now to level (NaN: as it is, the tokens reserved by the waiters
// in line given back). The waiters in line then reserve again, in order, on
// a new gate, or, during a hold-off, leave the line until it ends; those
// that may go sooner are woken. With no one in line and the level as it
// is, the gate is only retuned.
func (p *Pacer) reset(now time.Time, level float64) {
	r, b := p.pace()
	if math.IsNaN(level) {
		level = p.level(now)
	}
	level = min(level, float64(b))
	if p.holdUntil.After(now) {
		for _, w := range p.queue {
			w.r = nil
		}
		p.queue = p.queue[:0]
	}
	if len(p.queue) == 0 && math.Abs(level-min(p.gate.TokensAt(now), float64(b))) < 1e-9 {
		if p.gate.Limit() != r {
			p.gate.SetLimitAt(now, r)
		}
		if p.gate.Burst() != b {
			p.gate.SetBurstAt(now, b)
		}
		return
	}
	p.gate = newGate(now, r, b, level)
	sooner := false
	for _, w := range p.queue {
		before := w.r.DelayFrom(now)
		w.r = p.gate.ReserveN(now, 1)
		sooner = sooner || w.r.DelayFrom(now) < before
	}
	if sooner {
		p.notify()
	}
}

// newGate returns a limiter of rate r and burst b that holds level tokens
// (at most b, possibly fewer than 0) at now. A new limiter starts full; it
// is drained by whole tokens a little before now, so that its refill until
// now makes up the fraction.
func newGate(now time.Time, r rate.Limit, b int, level float64) *rate.Limiter {
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
	close(p.changed)
	p.changed = make(chan struct{})
}

// Observe takes the outcome of one attempt: resp and err as the request
// returned them. It is safe for concurrent use. Each Observe settles the
// oldest request let through by Wait whose outcome is still due; answers
// that overtake each other blur what the Pacer learns, which [Pacer.Do]
// avoids.
//
// The x-ratelimit-* headers of resp teach the Pacer the tenant's bucket size
// and refill rate and set the level of its gate (see [Pacer]).
//
// A *linker.RateLimitError (wrapped or not) holds every worker back, and
// makes the Pacer leave one more token in the tenant's bucket as a cushion
// (up to a quarter of the bucket) and slow its pace by a fifth (down to a
// quarter); both wear off as accepted requests pass. Once the tenant's rate
// is known, the hold-off ends when the tenant has refilled one token. Before
// that, it is estimated from the answer's headers (the missing tokens are
// back by x-ratelimit-reset); without them it lasts until the error's
// Reset, measured from resp.Date when the server sent one so that clock
// skew does not matter, each worker adding a jitter of up to MinBackoff;
// without a usable Reset it lasts a backoff that grows with consecutive
// 429s. A hold never exceeds MaxHold and never shortens one already in
// force.
func (p *Pacer) Observe(resp *linker.Response, err error) {
	p.observe(grant{}, resp, err)
}

// observe is Observe for the attempt g let through; a zero g stands for
// the oldest request whose answer is still due.
func (p *Pacer) observe(g grant, resp *linker.Response, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.stats.Requests++
	g = p.settle(now, g)
	var rl *linker.RateLimitError
	limited := errors.As(err, &rl)
	if limited {
		p.refuse(g.seq)
	}
	level := math.NaN()
	if resp != nil {
		level = p.learn(now, g, resp, limited)
	}
	if limited {
		p.hold(now, resp, rl)
	} else {
		p.limited = 0
	}
	p.reset(now, level)
}

// settle takes g off the list of pending requests and returns it; a zero g
// stands for the oldest pending request (or, when none is, the last one let
// through, time unknown).
func (p *Pacer) settle(now time.Time, g grant) grant {
	i := 0
	if g.seq == 0 {
		if len(p.pending) == 0 {
			return grant{seq: p.sent}
		}
		g = p.pending[0]
	} else {
		var found bool
		if i, found = slices.BinarySearchFunc(p.pending, g.seq, func(q grant, seq int64) int { return int(q.seq - seq) }); !found {
			i = -1
		}
	}
	if i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
	}
	stale := 0
	for stale < len(p.pending) && now.Sub(p.pending[stale].at) > forgetAfter {
		stale++
	}
	p.pending = slices.Delete(p.pending, 0, stale)
	return g
}

// pendingSince returns how many pending requests were let through at or
// after t (all of them when t is zero).
func (p *Pacer) pendingSince(t time.Time) int {
	i, _ := slices.BinarySearchFunc(p.pending, t, func(q grant, t time.Time) int { return q.at.Compare(t) })
	return len(p.pending) - i
}

// refuse records that request seq was refused with 429.
func (p *Pacer) refuse(seq int64) {
	p.nRefused++
	i, _ := slices.BinarySearch(p.refused, seq)
	p.refused = slices.Insert(p.refused, i, seq)
	if len(p.refused) > refusedKept {
		p.refused = slices.Delete(p.refused, 0, len(p.refused)-refusedKept)
	}
}

// refusedUpTo returns how many requests up to seq were refused with 429.
func (p *Pacer) refusedUpTo(seq int64) int64 {
	later := len(p.refused) - sortSearchAfter(p.refused, seq)
	return p.nRefused - int64(later)
}

// sortSearchAfter returns the index of the first element of s above v.
func sortSearchAfter(s []int64, v int64) int {
	i, found := slices.BinarySearch(s, v)
	for found && i < len(s) && s[i] == v {
		i++
	}
	return i
}

// learn takes the x-ratelimit-* headers of one answer to request g. It
// returns the level the gate should have at now, or NaN to leave it as it
// is.
func (p *Pacer) learn(now time.Time, g grant, resp *linker.Response, limited bool) float64 {
	h := resp.RateLimit
	if !h.Known || h.Limit <= 0 {
		if !p.seen && p.cfg.Rate > 0 && p.mirroring {
			// The configured caps alone apply from now on.
			p.mirroring = false
			return p.allowance.TokensAt(now)
		}
		return math.NaN()
	}
	if !p.seen || !p.mirroring {
		p.seen, p.mirroring = true, true
		p.mirrorRate, p.mirrorCap = p.slowRate(), 1
	}
	p.limit = h.Limit
	rem := min(max(h.Remaining, 0), h.Limit)
	at := now
	if !g.at.IsZero() {
		at = g.at.Add(now.Sub(g.at) / 2)
	}
	p.est.add(sample{
		at:        at,
		sent:      g.at,
		arrived:   now,
		spent:     float64(g.seq - p.refusedUpTo(g.seq)),
		limit:     h.Limit,
		remaining: rem,
		reset:     h.Reset,
		date:      resp.Date,
		refused:   limited,
	})
	p.retune(now)

	// The level: the tokens the tenant had when it handled a request
	// answered lately, plus its refill since, less one for each request
	// still pending that it may have handled after that one. Requests
	// let through together, or within the spread of latencies, race each
	// other, so each answer in the span of one latency counts, the lowest
	// wins. A level within one token above that is left as it is: it
	// carries the fraction of a token that remaining rounds away.
	if !g.at.IsZero() {
		p.latencies = append(p.latencies, now.Sub(g.at))
		if len(p.latencies) > latenciesKept {
			p.latencies = slices.Delete(p.latencies, 0, len(p.latencies)-latenciesKept)
		}
	}
	var slowest, fastest time.Duration
	if len(p.latencies) > 0 {
		slowest, fastest = slices.Max(p.latencies), slices.Min(p.latencies)
	}
	if !limited {
		p.probe(g, rem, slowest)
	}
	p.readings = append(p.readings, reading{arrived: now, handled: at, sent: g.at, remaining: float64(rem)})
	old := 0
	for old < len(p.readings)-1 && now.Sub(p.readings[old].arrived) > slowest {
		old++
	}
	p.readings = slices.Delete(p.readings, 0, old)
	low := math.Inf(1)
	for _, a := range p.readings {
		since := a.sent
		if !since.IsZero() {
			since = since.Add(-(slowest - fastest) / 2)
		}
		low = min(low, a.remaining+p.mirrorRate*now.Sub(a.handled).Seconds()-float64(p.pendingSince(since)))
	}
	low += p.slack
	low -= (1 - p.share) * float64(h.Limit)
	if !limited {
		low -= p.margin
		p.margin = max(0, p.margin-marginDecay)
		p.factor = min(1, p.factor+speedup)
	}
	// The gate is raised no further than the policy caps allow.
	switch cur := p.level(now); {
	case cur < low:
		if p.allowance != nil {
			low = max(cur, min(low, p.allowance.TokensAt(now)))
		}
		return low
	case cur > low+1:
		return low + 0.5
	}
	return math.NaN()
}

// probe looks for tokens the level leaves unused in the tenant's bucket.
// The level takes each answer's remaining as read midway through the round
// trip; a tenant that counts requests as they arrive (or just before it
// answers) had more (or fewer) tokens than that by the refill of half a
// round trip, and requests racing each other are counted against the
// level twice. Once the rate is known, the answers to requests the gate
// held back show what that costs: each such request came as soon as the
// Pacer thought the tenant had a token, so remaining should read 0, or 1
// with the one token the Pacer keeps so that a drift of the learned rate
// shows. When every answer over a span of probeAnswers answers and
// probeSpan seconds of pace reads at least m >= 2, the tenant had m-1
// tokens to spare all along, and the level is raised by m-1 from then on,
// up to one round trip's refill. A 429 halves the raise (see hold).
func (p *Pacer) probe(g grant, remaining int, slowest time.Duration) {
	if !g.waited || g.seq <= p.probeFrom || !p.est.net().known {
		return
	}
	if p.probeN == 0 || remaining < p.probeMin {
		p.probeMin = remaining
	}
	p.probeN++
	if float64(p.probeN) < max(probeAnswers, probeSpan*p.mirrorRate) {
		return
	}
	if p.probeMin > 1 {
		p.slack = min(p.slack+float64(p.probeMin-1), max(p.slack, p.mirrorRate*slowest.Seconds()))
	}
	p.probeFrom, p.probeN = p.sent, 0
}

// slowRate is the pace before the tenant's rate is known.
func (p *Pacer) slowRate() float64 {
	if p.cfg.Rate > 0 {
		return min(p.cfg.Rate, startRate)
	}
	return startRate
}

// retune sets the caps from what was learned; reset applies them to the
// gate.
func (p *Pacer) retune(now time.Time) {
	net := p.est.net()
	r := p.slowRate()
	switch {
	case net.known:
		r = net.rate
		// Kept near empty, the tenant's bucket reads remaining 0 whatever
		// fraction of a token it holds, so the fit only confirms the pace
		// it is given: a pace a little above the refill would drain that
		// fraction unseen until a 429. The reset times show the refill
		// whatever the pace, erring low; a pace below the refill shows as
		// remaining 1 and the gate's level makes up the tokens (see
		// learn). The reset times are whole seconds, so they are trusted
		// only for a bucket that takes long enough to refill.
		g, ok := p.est.gross()
		if ok && g < r && float64(p.limit) >= grossCapRefill*r {
			r = g
		}
	case net.settled && net.rate-2*net.se > r:
		// Not precise yet, but surely faster than the slow pace.
		r = net.rate - 2*net.se
	}
	if !net.known {
		// A bucket that fills up between answers hides its rate from
		// the fit, but not how fast it at least refills.
		r = max(r, p.est.bound())
	}
	r = max(r*p.factor, minRate)
	size := max(1, p.share*float64(p.limit))
	if p.cfg.Burst > 0 {
		size = min(size, float64(p.cfg.Burst))
	}
	p.mirrorCap, p.mirrorRate = size, r

	most := math.Inf(1)
	if p.cfg.Rate > 0 {
		most = p.cfg.Rate
	}
	// Until the rate is known, a share is kept by the tokens left in the
	// tenant's bucket alone: the refill can only be measured while the
	// bucket is not full, so the Pacer has to draw on it for a while.
	if learned, ok := p.est.learned(); ok && p.share < 1 {
		most = min(most, max(p.share*learned, minRate))
	}
	if math.IsInf(most, 1) {
		return
	}
	p.policyCap, p.policyRate = size, most
	if p.allowance == nil {
		p.allowance = rate.NewLimiter(rate.Limit(most), max(1, int(size)))
		return
	}
	p.allowance.SetBurstAt(now, max(1, int(size)))
	p.allowance.SetLimitAt(now, rate.Limit(most))
}

// hold sets the shared hold-off after a 429 answer.
func (p *Pacer) hold(now time.Time, resp *linker.Response, rl *linker.RateLimitError) {
	p.stats.RateLimited++
	p.limited++
	var d time.Duration
	jitter := false
	if p.seen {
		p.slack = math.Floor(p.slack / 2)
		p.probeFrom, p.probeN = p.sent, 0
		p.margin = min(p.margin+marginStep, float64(p.limit)/4)
		p.factor = max(minFactor, p.factor*slowdown)
		p.retune(now)
	}
	if net := p.est.net(); p.seen && net.known {
		d = time.Duration(float64(time.Second) / max(net.rate, minRate))
	} else if d = tokenWait(now, resp); d <= 0 {
		jitter = true
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
	}
	until := now.Add(min(d, p.cfg.MaxHold))
	if until.After(p.holdUntil) {
		p.stats.Hold += until.Sub(later(p.holdUntil, now))
		p.holdUntil = until
		p.holdJitter = jitter
	}
}

// tokenWait estimates, from the headers of a 429 answer, how long the
// tenant takes to refill one token: the missing tokens are back by the
// reset time. The estimate errs long (the reset is rounded up, Date down).
// It returns 0 when the headers do not tell.
func tokenWait(now time.Time, resp *linker.Response) time.Duration {
	if resp == nil || !resp.RateLimit.Known || resp.RateLimit.Reset.IsZero() {
		return 0
	}
	h := resp.RateLimit
	missing := h.Limit - max(h.Remaining, 0)
	if missing <= 0 {
		return 0
	}
	from := now
	if !resp.Date.IsZero() {
		from = resp.Date
	}
	return h.Reset.Sub(from) / time.Duration(missing)
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
		g, werr := p.wait(ctx)
		if werr != nil {
			return attempts, resp, stopped(werr, attempts, err)
		}
		attempts++
		resp, err = op(ctx)
		p.observe(g, resp, err)
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
