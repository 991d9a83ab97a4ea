package ratelimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// tenantModel is an in-memory Management API rate limit: a token bucket of
// size tokens refilled continuously at rate per second, which answers every
// request with the x-ratelimit-* headers and a Date, on a server clock skew
// ahead of the local one. It is safe for concurrent use.
type tenantModel struct {
	mu     sync.Mutex
	rate   float64
	size   int
	skew   time.Duration
	tokens float64
	last   time.Time
	// fail lists which accepted requests (numbered from 0 in the order
	// the tenant took their tokens) are answered 503 instead of handled.
	fail     map[int]bool
	accepted int
}

func newTenantModel(rate float64, size int, skew time.Duration) *tenantModel {
	return &tenantModel{rate: rate, size: size, skew: skew, tokens: float64(size), last: time.Now()}
}

// take draws one token at the current time. It returns whether there was
// one, with the headers and Date of the answer.
func (m *tenantModel) take() (bool, linker.RateLimit, time.Time) {
	ok, rl, date, _ := m.draw()
	return ok, rl, date
}

// draw is take, also telling whether an accepted request is answered 503.
func (m *tenantModel) draw() (bool, linker.RateLimit, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.tokens = min(float64(m.size), m.tokens+now.Sub(m.last).Seconds()*m.rate)
	m.last = now
	ok := m.tokens >= 1-1e-9
	failed := false
	if ok {
		m.tokens = max(m.tokens-1, 0)
		failed = m.fail[m.accepted]
		m.accepted++
	}
	server := now.Add(m.skew)
	full := server.Add(time.Duration((float64(m.size) - m.tokens) / m.rate * float64(time.Second)))
	reset := full.Truncate(time.Second)
	if reset.Before(full) {
		reset = reset.Add(time.Second)
	}
	return ok, linker.RateLimit{
		Known:     true,
		Limit:     m.size,
		Remaining: int(math.Floor(m.tokens + 1e-9)),
		Reset:     reset,
	}, server.Truncate(time.Second), failed
}

// call is one request to the model, answered as the linker client would:
// up and down are the legs of the network, handling the time the tenant
// spends on an accepted request after taking its token. The Date of an
// accepted request's answer is stamped when the tenant is done with it; a
// 429 is answered at once.
func (m *tenantModel) call(ctx context.Context, up, handling, down time.Duration) (*linker.Response, error) {
	if err := sleep(ctx, up); err != nil {
		return nil, err
	}
	ok, rl, date, failed := m.draw()
	if ok && handling > 0 {
		if err := sleep(ctx, handling); err != nil {
			return nil, err
		}
		date = time.Now().Add(m.skew).Truncate(time.Second)
	}
	if err := sleep(ctx, down); err != nil {
		return nil, err
	}
	resp := &linker.Response{StatusCode: 201, RateLimit: rl, Date: date}
	if failed {
		resp.StatusCode = 503
		return resp, apiErr(503, "server_error", "Service Unavailable")
	}
	if !ok {
		resp.StatusCode = 429
		return resp, &linker.RateLimitError{APIError: *apiErr(429, "too_many_requests", "Too many requests."), Reset: rl.Reset}
	}
	return resp, nil
}

// profile is one tenant and one way of driving a Pacer against it.
type profile struct {
	name    string
	rate    float64       // the tenant's refill, per second
	size    int           // the tenant's bucket size
	latency time.Duration // of the network, both legs together
	jitter  float64       // each leg of a request varies within ±jitter of its mean
	// handling is how long the tenant works on an accepted request after
	// taking its token and before stamping the answer's Date; each
	// request's varies within [handling, handling+handlingJitter).
	handling, handlingJitter time.Duration
	other                    float64 // fraction of the refill another client spends
	cfg                      func(*Config)
	skew                     time.Duration // server clock minus local clock; 0 means 3.3s
	public                   bool          // drive Wait and Observe instead of Do
	workers                  int           // 0 means what Concurrency asks for at the tenant's rate
	fail                     []int         // accepted requests answered 503 (see tenantModel)
}

// outcome is what one run of a profile measured.
type outcome struct {
	n, workers      int
	makespan, floor time.Duration
	requests, l429  int64
	learned, pace   float64
	known           bool
	learnedBurst    int
	available       float64 // the refill usable by this client
}

func (o outcome) String() string {
	return fmt.Sprintf("n=%d c=%d makespan/floor=%.3f (%v/%v) 429=%d/%d (%.2f%%) learned=%.3f known=%v burst=%d pace=%.3f",
		o.n, o.workers, float64(o.makespan)/float64(o.floor), o.makespan.Round(time.Millisecond), o.floor.Round(time.Millisecond),
		o.l429, o.requests, 100*float64(o.l429)/float64(o.requests), o.learned, o.known, o.learnedBurst, o.pace)
}

// run links enough rows against a model of pr's tenant, in fake time, to
// last at least 20s and ten bucket sizes, and reports what it measured.
func (pr profile) run(t *testing.T) outcome {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Seed = 7
	if pr.cfg != nil {
		pr.cfg(&cfg)
	}
	share := cfg.Share
	if share == 0 {
		share = 1
	}
	// The floor: the usable part of the bucket at once, then the usable
	// refill, then one latency.
	avail := min(pr.rate*(1-pr.other), share*pr.rate)
	usable := share * float64(pr.size)
	if cfg.Rate > 0 {
		avail = min(avail, cfg.Rate)
	}
	if cfg.Burst > 0 {
		usable = min(usable, float64(cfg.Burst))
	}
	n := int(max(10*float64(pr.size), math.Ceil(usable+20*avail)))
	var o outcome
	o.n, o.available = n, avail
	o.workers = pr.workers
	if o.workers == 0 {
		o.workers = concurrency(pr.rate, pr.latency+pr.handling+pr.handlingJitter/2, 0)
	}
	o.floor = time.Duration((float64(n)-usable)/avail*float64(time.Second)) + pr.latency + pr.handling + pr.handlingJitter/2

	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, cfg)
		skew := pr.skew
		if skew == 0 {
			skew = 3*time.Second + 300*time.Millisecond
		}
		m := newTenantModel(pr.rate, pr.size, skew)
		if len(pr.fail) > 0 {
			m.fail = make(map[int]bool)
			for _, i := range pr.fail {
				m.fail[i] = true
			}
		}
		var rmu sync.Mutex
		rnd := rand.New(rand.NewPCG(1, 2))
		leg := func() time.Duration {
			rmu.Lock()
			defer rmu.Unlock()
			f := 1 + pr.jitter*(2*rnd.Float64()-1)
			return time.Duration(f * float64(pr.latency) / 2)
		}
		handle := func() time.Duration {
			rmu.Lock()
			defer rmu.Unlock()
			return pr.handling + time.Duration(rnd.Float64()*float64(pr.handlingJitter))
		}
		ctx, cancel := context.WithCancel(t.Context())
		var others sync.WaitGroup
		if pr.other > 0 {
			// The other client's requests come at random (Poisson) and
			// are retried 100ms after a 429, so that in the long run it
			// takes its whole part.
			others.Go(func() {
				ornd := rand.New(rand.NewPCG(3, 4))
				due := time.Now()
				for {
					due = due.Add(time.Duration(ornd.ExpFloat64() / (pr.other * pr.rate) * float64(time.Second)))
					if sleep(ctx, time.Until(due)) != nil {
						return
					}
					for ok, _, _ := m.take(); !ok; ok, _, _ = m.take() {
						if sleep(ctx, 100*time.Millisecond) != nil {
							return
						}
					}
				}
			})
		}
		rows := make(chan int, n)
		for i := range n {
			rows <- i
		}
		close(rows)
		start := time.Now()
		var (
			mu   sync.Mutex
			last time.Time
			wg   sync.WaitGroup
		)
		for range o.workers {
			wg.Go(func() {
				for range rows {
					var err error
					if pr.public {
						err = publicDo(ctx, p, func(ctx context.Context) (*linker.Response, error) { return m.call(ctx, leg(), handle(), leg()) })
					} else {
						_, _, err = p.doLink(ctx, func(ctx context.Context) (*linker.Response, error) { return m.call(ctx, leg(), handle(), leg()) })
					}
					if err != nil {
						t.Errorf("row failed: %v", err)
					}
					mu.Lock()
					last = time.Now()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		cancel()
		others.Wait()
		o.makespan = last.Sub(start)
		st := p.Stats()
		o.requests, o.l429 = st.Requests, st.RateLimited
		o.learned, o.learnedBurst, o.known = p.Learned()
		o.pace = p.Limit()
	})
	return o
}

// publicDo is Do through wait and observe alone, answers not matched to
// their requests, retrying 429s.
func publicDo(ctx context.Context, p *Pacer, op func(context.Context) (*linker.Response, error)) error {
	for range 30 {
		if err := p.waitTurn(ctx); err != nil {
			return err
		}
		resp, err := op(ctx)
		p.observeLink(resp, err)
		if err == nil || ctx.Err() != nil || !linker.Retryable(err) {
			return err
		}
	}
	return fmt.Errorf("still rate-limited after 30 attempts")
}

func TestPacerAgainstTenantModel(t *testing.T) {
	const (
		fast = 20 * time.Millisecond
		slow = 250 * time.Millisecond
	)
	explicit := func(rate float64, burst int) func(*Config) {
		return func(c *Config) { c.Rate, c.Burst = rate, burst }
	}
	tests := []struct {
		profile
		max429 float64 // largest share of 429 answers; 0 means 1%
		// minFloor is the least makespan/floor, for profiles that must
		// not go faster than asked.
		minFloor float64
		hidden   bool // the tenant's rate never shows
		no429    bool // not a single 429 is allowed
	}{
		{profile: profile{name: "free 20ms", rate: 2, size: 2, latency: fast}},
		{profile: profile{name: "free 250ms", rate: 2, size: 2, latency: slow}},
		{profile: profile{name: "essentials 20ms", rate: 200.0 / 60, size: 20, latency: fast}},
		{profile: profile{name: "essentials 250ms", rate: 200.0 / 60, size: 20, latency: slow}},
		{profile: profile{name: "enterprise 20ms", rate: 16, size: 50, latency: fast}},
		{profile: profile{name: "enterprise 250ms", rate: 16, size: 50, latency: slow}},
		{profile: profile{name: "private 20ms", rate: 100, size: 100, latency: fast}},
		{profile: profile{name: "private 250ms", rate: 100, size: 100, latency: slow}},
		{profile: profile{name: "free 250ms 64 workers", rate: 2, size: 2, latency: slow, workers: 64}},
		{profile: profile{name: "enterprise 250ms 64 workers", rate: 16, size: 50, latency: slow, workers: 64}},
		{profile: profile{name: "enterprise 250ms ±60% jitter", rate: 16, size: 50, latency: slow, jitter: 0.6}},
		{profile: profile{name: "enterprise 250ms Wait+Observe", rate: 16, size: 50, latency: slow, public: true}},
		{profile: profile{name: "enterprise 250ms server clock 47s behind", rate: 16, size: 50, latency: slow, skew: -47 * time.Second}},
		{profile: profile{name: "essentials 250ms --rate 10 --burst 50", rate: 200.0 / 60, size: 20, latency: slow, cfg: explicit(10, 50)}},
		{profile: profile{name: "enterprise 20ms --rate 40", rate: 16, size: 50, latency: fast, cfg: explicit(40, 0)}},
		{profile: profile{name: "enterprise 250ms --rate 5 --burst 10", rate: 16, size: 50, latency: slow, cfg: explicit(5, 10)}, minFloor: 0.99, hidden: true},
		{profile: profile{name: "enterprise 250ms other client 30%", rate: 16, size: 50, latency: slow, other: 0.3}, max429: 0.03},
		{profile: profile{name: "essentials 20ms other client 30%", rate: 200.0 / 60, size: 20, latency: fast, other: 0.3}, max429: 0.03},
		{profile: profile{name: "enterprise 250ms ±60% jitter 64 workers other client 30%", rate: 16, size: 50, latency: slow, jitter: 0.6, workers: 64, other: 0.3}, max429: 0.03},
		// The tenant takes the token when a request arrives and stamps
		// the answer's Date when it is done with it, 250-300ms later.
		{profile: profile{name: "enterprise 250ms handling", rate: 16, size: 50, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond}},
		{profile: profile{name: "private 250ms handling", rate: 100, size: 100, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond}},
		{profile: profile{name: "enterprise 250ms handling 64 workers", rate: 16, size: 50, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 64}},
		{profile: profile{name: "enterprise 250ms handling 128 workers", rate: 16, size: 50, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 128}},
		{profile: profile{name: "private 250ms handling 64 workers", rate: 100, size: 100, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 64}},
		{profile: profile{name: "private 250ms handling 128 workers", rate: 100, size: 100, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 128}},
		// The tenant's bucket is kept near empty, where remaining reads 0
		// whatever fraction of a token is left: a pace learned a little
		// above the refill must not drain that fraction into a 429. The
		// skews put the server's whole seconds at different phases.
		{profile: profile{name: "essentials 250ms handling 32 workers", rate: 200.0 / 60, size: 20, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 32, skew: 3250 * time.Millisecond}, no429: true},
		{profile: profile{name: "essentials 250ms handling 32 workers other phase", rate: 200.0 / 60, size: 20, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 32, skew: 3700 * time.Millisecond}, no429: true},
		// A few requests are answered 503 after taking a token, two of
		// them near the end: each costs a token and its backoff, no more.
		{profile: profile{name: "enterprise 250ms handling 32 workers 5xx", rate: 16, size: 50, latency: 2 * time.Millisecond, handling: slow, handlingJitter: 50 * time.Millisecond, workers: 32, fail: []int{18, 280, 487, 495}}},
		// Buckets smaller than a round trip's refill fill up between
		// answers, which hides the rate from the fit.
		{profile: profile{name: "bucket 20 at 100/s 250ms", rate: 100, size: 20, latency: slow}},
		{profile: profile{name: "bucket 5 at 120/s 20ms", rate: 120, size: 5, latency: fast}},
		{profile: profile{name: "bucket 10 at 20/s 20ms", rate: 20, size: 10, latency: fast}},
		{profile: profile{name: "enterprise 250ms share 0.5", rate: 16, size: 50, latency: slow, cfg: func(c *Config) { c.Share = 0.5 }}, minFloor: 0.9},
		// Until the rate is known, a half share of so small a bucket
		// claims half of what it shows, which lets the Pacer take a
		// little more than half at first.
		{profile: profile{name: "essentials 20ms share 0.5", rate: 200.0 / 60, size: 20, latency: fast, cfg: func(c *Config) { c.Share = 0.5 }}, minFloor: 0.85},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.run(t)
			t.Logf("%s", o)
			ratio := float64(o.makespan) / float64(o.floor)
			if ratio > 1.05 {
				t.Errorf("makespan %v is %.3f × the floor %v, want <= 1.05", o.makespan, ratio, o.floor)
			}
			if ratio < tt.minFloor {
				t.Errorf("makespan %v is %.3f × the floor %v, want >= %.2f: faster than allowed", o.makespan, ratio, o.floor, tt.minFloor)
			}
			max429 := tt.max429
			if max429 == 0 {
				max429 = 0.01
			}
			if tt.no429 && o.l429 > 0 {
				t.Errorf("%d of %d requests got 429, want none", o.l429, o.requests)
			}
			if got := float64(o.l429) / float64(o.requests); got > max429 {
				t.Errorf("%d of %d requests (%.2f%%) got 429, want <= %.0f%%", o.l429, o.requests, 100*got, 100*max429)
			}
			// With another client on the bucket, the rate comes from the
			// reset times, which cannot tell when the tenant took the
			// token within the round trip: it errs low by up to one
			// latency over the time to reset (250ms of about 3s here),
			// never high.
			low := 0.05
			if tt.other > 0 {
				low = 0.1
			}
			switch {
			case tt.hidden:
				if o.known {
					t.Errorf("Learned() = %.3f, known; want unknown: the tenant's bucket never ran low", o.learned)
				}
			case !o.known || o.learned > 1.05*tt.rate || o.learned < (1-low)*tt.rate:
				t.Errorf("Learned() = %.3f (known %v), want within -%.0f%%/+5%% of %.3f", o.learned, o.known, 100*low, tt.rate)
			}
			if o.learnedBurst != tt.size {
				t.Errorf("Learned() burst = %d, want %d", o.learnedBurst, tt.size)
			}
			// The pace is the share claimed of the tenant's refill, which
			// rises and falls with the control law (see the package
			// doc): it never exceeds the tenant's refill, nor what the
			// configured caps allow.
			if most := max(o.available, tt.rate*(1-tt.other)); o.pace > 1.05*tt.rate || tt.other == 0 && o.pace > 1.05*most {
				t.Errorf("Limit() = %.3f at the end, want at most %.3f", o.pace, min(tt.rate, most))
			}
		})
	}
}
