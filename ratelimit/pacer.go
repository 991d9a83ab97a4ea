package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
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
	// Shared, when set, is a limiter shared with other processes that
	// every request also waits on once the gate lets it through (see
	// [Shared]).
	Shared Shared
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
	Requests    int64         // attempts made
	RateLimited int64         // answers among them that refused the request for the rate limit
	Retries     int64         // attempts Do made beyond the first of each call
	Hold        time.Duration // wall-clock time covered by hold-offs after refusals
}

// Answer is what the tenant's answer to one request said of its rate limit:
// all the Pacer learns from an attempt. The caller builds it from the
// response (for HTTP, the x-ratelimit-* and Date headers and a 429 status).
// The zero Answer stands for no answer at all (a transport failure).
type Answer struct {
	// Arrived is true when an answer came, whatever it said.
	Arrived bool
	// Limit is the size of the tenant's bucket, 0 when the answer did not
	// say; Remaining the tokens left in it and Reset when it is full again
	// (on the tenant's clock, zero if not said).
	Limit, Remaining int
	Reset            time.Time
	// Date is the tenant's clock when it answered; zero if not said.
	Date time.Time
	// RateLimited is true when the tenant refused the request for its rate
	// limit (HTTP 429); RetryAt is then when it said a request may be sent
	// again (on its clock), zero if it did not say.
	RateLimited bool
	RetryAt     time.Time
}

// Pacer paces the requests of all workers to one tenant and retries them.
// Its pace and burst follow what the tenant's answers show of its rate
// limit (see [Answer]), within the caps of its [Config].
//
// A Pacer is safe for concurrent use by any number of workers and starts no
// goroutines. The zero value is not usable: create a Pacer with [New].
//
// Use [Pacer.Do] for every request: it waits for the request's turn, runs
// it, reports its answer and retries it when the tenant refused it for the
// rate limit or it failed transiently. [Pacer.Limit], [Pacer.Burst],
// [Pacer.Learned] and [Pacer.Stats] report what the Pacer does and saw.
//
// Requests are let through, first come first served, by one
// golang.org/x/time/rate limiter shared by all workers: the gate (see
// gate.go). Its rate and burst are the smaller of two sets of caps. The
// policy caps are Config.Rate and Burst when set, and Share of the tenant's
// learned rate and bucket size. The mirror caps model the tenant's own
// bucket (see model.go): until the tenant has answered they let one request
// through at a time, at Config.Rate or, when that is 0, 2 per second; from
// then on the burst is the tenant's bucket size (times Share) and the rate
// the refill learned from the answers (see [Pacer.Learned]), 2 per second
// until then. The gate's level follows the Remaining of the latest answers,
// less the requests still pending that the tenant may have counted after
// them, plus the refill since, so the tenant's whole bucket is spent at once
// and the Pacer never thinks it fuller than the tenant says, save for the
// tokens its answers show it leaves unused; it is never raised above what
// the policy caps alone would allow. When the tenant's first answer says
// nothing of its bucket and Config.Rate is set, the mirror is switched off
// and the configured rate and burst apply as they are.
type Pacer struct {
	cfg       Config
	retryable func(error) bool

	mu    sync.Mutex
	rnd   *rand.Rand // jitter; not safe for concurrent use, guarded by mu
	gate  gate       // guarded by mu
	model bucket     // guarded by mu
	held  holdOff    // guarded by mu
	stats Stats
}

// New returns a Pacer for cfg, or the error of cfg.Validate. retryable
// reports whether an attempt that failed with an error, and was not refused
// for the rate limit, may be made again (see [Pacer.Do]); it must be safe
// for concurrent use. A nil retryable retries only refused attempts.
func New(cfg Config, retryable func(error) bool) (*Pacer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if retryable == nil {
		retryable = func(error) bool { return false }
	}
	p := &Pacer{
		cfg:       cfg,
		retryable: retryable,
		rnd:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		model:     newBucket(cfg),
	}
	p.gate = newGateFor(p.model.pace())
	return p, nil
}

// Limit returns the current pace, in requests per second: the configured
// Rate, or the rate learned from the tenant when that is lower.
func (p *Pacer) Limit() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.model.limit()
}

// Burst returns the current burst size: 1 until the tenant has shown its
// bucket size, then the smaller of that (times Share) and the configured
// Burst.
func (p *Pacer) Burst() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, b := p.model.pace()
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
	return p.model.learned()
}

// Stats returns a snapshot of the counters.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// InFlight returns how many requests should be in flight at once to keep
// up the current pace, given the latencies of the latest answers: a quarter
// more than pace times the slowest recent latency, rounded up, plus one,
// plus, until the tenant's rate is known and outside a hold-off, one for
// each whole token the gate would let through at once (the tenant's burst,
// or the part of it claimed, is spent at once only so); at least 1 and at
// most most (when most > 0). Until the tenant's rate and latency are known
// it sizes them from the least refill the answers prove, and never returns
// fewer than min(most, startInFlight): the Pacer holds back what the
// tenant cannot take, and needs requests in flight to learn its rate. It
// is safe for concurrent use.
func (p *Pacer) InFlight(most int) int {
	floor := startInFlight
	if most > 0 {
		floor = min(most, startInFlight)
	}
	p.mu.Lock()
	latency := p.model.slowest
	// The whole share of the tenant's rate, not the pace of the moment:
	// the pace may grow back to it within seconds.
	rate, known := p.model.est.learned()
	rate *= p.model.share
	unknown := !p.model.mirroring || !known
	if unknown {
		// Until the rate is known, the least refill the answers prove
		// (see the mirror caps): each step up lets more requests show
		// more of it.
		rate = max(p.model.limit(), p.model.est.bound())
	}
	rate = min(rate, p.model.policyRate)
	// Until then, also the tokens the gate would let through at once:
	// the tenant's burst, or the part of it claimed, is spent at once
	// only with a request in flight for each token. None during a
	// hold-off, which keeps every request back; and none once the rate
	// is known: the headroom above the pace spends what is left of the
	// burst, and tokens saved while linkbatch was starved of CPU are not
	// worth a storm of new connections.
	now := time.Now()
	tokens := 0.0
	if unknown && !p.held.until.After(now) {
		tokens = max(0, math.Floor(p.level(now)))
	}
	p.mu.Unlock()
	if latency <= 0 {
		return floor
	}
	n := concurrency(rate, latency, 0) + int(tokens)
	if most > 0 {
		n = min(n, most)
	}
	return max(n, floor)
}

// startInFlight is how many requests InFlight allows before the tenant's
// pace and latency are known, and never fewer.
const startInFlight = 32

// inFlight returns how many requests should be in flight to keep up the
// pace when a request takes latency: a quarter more than pace times latency,
// rounded up, plus one, so that a full tenant bucket is spent quickly too;
// at least 1 and at most maxInFlight when that is > 0. Until the tenant's
// rate is known it returns maxInFlight (when > 0): the Pacer holds back what
// the tenant cannot take, and needs requests in flight to measure its rate.
func (p *Pacer) inFlight(latency time.Duration, maxInFlight int) int {
	p.mu.Lock()
	rate := p.model.limit()
	unknown := p.model.mirroring && !p.model.est.net().known
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

// observe takes the answer a to the attempt g let through; a zero g stands
// for the oldest request whose answer is still due (answers that overtake
// each other then blur what the Pacer learns, which Do avoids). It is the
// only way answers influence pacing.
//
// What a says of the tenant's bucket teaches the model its size and refill
// rate and sets the level of the gate (see [Pacer]). A refusal for the rate
// limit holds every worker back (see hold).
//
// observe reports whether a was a passing refusal: one from another bucket
// (or before any was seen) that says it is full again by now. It holds
// back no other worker; the caller pauses the refused call alone.
func (p *Pacer) observe(g grant, a Answer) (passing bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.stats.Requests++
	g = p.model.settle(now, g)
	if a.RateLimited {
		p.model.refuse(g.seq)
	}
	// A refusal the announced bucket cannot explain (it shows tokens
	// left, or is another bucket than the accepted answers show) comes
	// from a limit the headers do not announce: its headers teach
	// nothing of the bucket.
	other := a.RateLimited && a.Limit > 0 && p.model.seen && a.Limit != p.model.size
	unexplained := a.RateLimited && a.Limit > 0 && (a.Remaining >= 1 || other)
	// A refusal from another bucket (or before any was seen) that says
	// it is full again by now is waited out, no more.
	passing = (other || !p.model.seen) && a.RateLimited && a.Limit > 0 &&
		!a.Reset.IsZero() && !a.Reset.After(later(a.Date, now).Add(time.Second))
	level := math.NaN()
	if a.Arrived && !unexplained && !passing {
		level = p.model.learn(now, g, a, p.level(now))
	}
	if a.Arrived && !a.RateLimited {
		p.model.accept(now)
	}
	switch {
	case passing:
		p.stats.RateLimited++
	case a.RateLimited:
		p.hold(now, a, unexplained)
	default:
		p.held.limited = 0
	}
	p.reset(now, level)
	return passing
}
