package ratelimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// sharedProfile is one tenant bucket drawn on by several Pacers at once,
// each with its own rows, as separate linkbatch processes would.
type sharedProfile struct {
	name    string
	rate    float64 // the tenant's refill, per second
	size    int     // the tenant's bucket size
	latency time.Duration
	jitter  float64 // each leg varies within ±jitter of its mean
	pacers  int
	rows    int           // per Pacer
	stagger time.Duration // Pacer i starts i×stagger after the first
	// hiddenRate and hiddenSize, when set, are a second bucket the
	// tenant checks first and never announces: a request it refuses is
	// answered 429 with the headers of the announced bucket.
	hiddenRate float64
	hiddenSize int
	workers    int // per Pacer; 0 means what the Pacer's rate asks for
	cfg        func(*Config)
}

// sharedOutcome is what one run of a sharedProfile measured.
type sharedOutcome struct {
	makespan, floor time.Duration
	finish          []time.Duration // per Pacer, from the first start
	requests, l429  int64
	// rates[i] is Pacer i's mean pace over the middle of the run, when
	// every Pacer is running.
	rates []float64
}

func (o sharedOutcome) String() string {
	var f []string
	for _, d := range o.finish {
		f = append(f, d.Round(10*time.Millisecond).String())
	}
	var r []string
	for _, x := range o.rates {
		r = append(r, fmt.Sprintf("%.1f", x))
	}
	return fmt.Sprintf("makespan/floor=%.3f (%v/%v) 429=%d/%d (%.2f%%) finish=[%s] spread=%.3f rates=[%s]",
		o.ratio(), o.makespan.Round(time.Millisecond), o.floor.Round(time.Millisecond),
		o.l429, o.requests, 100*o.share429(), strings.Join(f, " "), o.spread(), strings.Join(r, " "))
}

// check logs o and fails t if its makespan is over maxRatio × the floor
// or over max429 of its requests got 429.
func (o sharedOutcome) check(t *testing.T, maxRatio, max429 float64) {
	t.Helper()
	t.Logf("%s", o)
	if r := o.ratio(); r > maxRatio {
		t.Errorf("makespan is %.3f × the floor, want <= %.3f", r, maxRatio)
	}
	if s := o.share429(); s > max429 {
		t.Errorf("%.2f%% of requests got 429, want <= %.0f%%", 100*s, 100*max429)
	}
}

func (o sharedOutcome) ratio() float64    { return float64(o.makespan) / float64(o.floor) }
func (o sharedOutcome) share429() float64 { return float64(o.l429) / max(float64(o.requests), 1) }

// spread is how much earlier than the last the first Pacer finished, as a
// fraction of the makespan.
func (o sharedOutcome) spread() float64 {
	lo, hi := o.finish[0], o.finish[0]
	for _, d := range o.finish {
		lo, hi = min(lo, d), max(hi, d)
	}
	return float64(hi-lo) / float64(hi)
}

// hiddenTenant is a tenantModel behind a bucket it does not announce.
type hiddenTenant struct {
	*tenantModel
	hmu    sync.Mutex
	hrate  float64
	hsize  float64
	htoks  float64
	hlast  time.Time
	hidden bool
}

// call is tenantModel.call behind the hidden bucket, when there is one.
func (h *hiddenTenant) call(ctx context.Context, up, down time.Duration) (*linker.Response, error) {
	if !h.hidden {
		return h.tenantModel.call(ctx, up, 0, down)
	}
	if err := sleep(ctx, up); err != nil {
		return nil, err
	}
	h.hmu.Lock()
	now := time.Now()
	h.htoks = min(h.hsize, h.htoks+now.Sub(h.hlast).Seconds()*h.hrate)
	h.hlast = now
	ok := h.htoks >= 1-1e-9
	if ok {
		h.htoks = max(h.htoks-1, 0)
	}
	h.hmu.Unlock()
	if ok {
		resp, err := h.tenantModel.call(ctx, 0, 0, down)
		return resp, err
	}
	// Refused by the global limit: the announced bucket is only read.
	h.tenantModel.mu.Lock()
	m := h.tenantModel
	m.tokens = min(float64(m.size), m.tokens+now.Sub(m.last).Seconds()*m.rate)
	m.last = now
	server := now.Add(m.skew)
	full := server.Add(time.Duration((float64(m.size) - m.tokens) / m.rate * float64(time.Second)))
	rl := linker.RateLimit{Known: true, Limit: m.size, Remaining: int(math.Floor(m.tokens + 1e-9)), Reset: full.Truncate(time.Second).Add(time.Second)}
	h.tenantModel.mu.Unlock()
	if err := sleep(ctx, down); err != nil {
		return nil, err
	}
	resp := &linker.Response{StatusCode: 429, RateLimit: rl, Date: server.Truncate(time.Second)}
	return resp, &linker.RateLimitError{APIError: *apiErr(429, "too_many_requests", "Global limit has been reached"), Reset: rl.Reset}
}

// run drives sp.pacers Pacers, each over its own rows with its own
// workers, against one model tenant in fake time.
func (sp sharedProfile) run(t *testing.T) sharedOutcome {
	t.Helper()
	var o sharedOutcome
	total := sp.pacers * sp.rows
	rate, size := sp.rate, float64(sp.size)
	if sp.hiddenRate > 0 {
		rate, size = min(rate, sp.hiddenRate), min(size, float64(sp.hiddenSize))
	}
	o.floor = time.Duration((float64(total)-size)/rate*float64(time.Second)) + sp.latency
	o.finish = make([]time.Duration, sp.pacers)
	o.rates = make([]float64, sp.pacers)
	synctest.Test(t, func(t *testing.T) {
		h := &hiddenTenant{tenantModel: newTenantModel(sp.rate, sp.size, 3300*time.Millisecond)}
		if sp.hiddenRate > 0 {
			h.hidden, h.hrate, h.hsize, h.htoks, h.hlast = true, sp.hiddenRate, float64(sp.hiddenSize), float64(sp.hiddenSize), time.Now()
		}
		var rmu sync.Mutex
		rnd := rand.New(rand.NewPCG(5, 6))
		leg := func() time.Duration {
			rmu.Lock()
			defer rmu.Unlock()
			f := 1 + sp.jitter*(2*rnd.Float64()-1)
			return time.Duration(f * float64(sp.latency) / 2)
		}
		start := time.Now()
		// The middle of the run: from when the last Pacer started plus a
		// few seconds to a third of the floor later.
		midFrom := time.Duration(sp.pacers-1)*sp.stagger + 3*time.Second
		midTo := midFrom + o.floor/3
		var wg sync.WaitGroup
		pacers := make([]*Pacer, sp.pacers)
		for i := range sp.pacers {
			cfg := DefaultConfig()
			cfg.Seed = uint64(11 + i)
			if sp.cfg != nil {
				sp.cfg(&cfg)
			}
			p := newPacer(t, cfg)
			pacers[i] = p
			wg.Go(func() {
				if err := sleep(t.Context(), time.Duration(i)*sp.stagger); err != nil {
					return
				}
				rows := make(chan int, sp.rows)
				for j := range sp.rows {
					rows <- j
				}
				close(rows)
				var (
					mu      sync.Mutex
					last    time.Time
					midDone int
					active  int
					ww      sync.WaitGroup
				)
				// The pool grows with the Pacer's pace, as batch's does.
				want := func() int {
					if sp.workers > 0 {
						return sp.workers
					}
					return p.inFlight(sp.latency, 1000)
				}
				var worker func()
				worker = func() {
					for range rows {
						_, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
							resp, err := h.call(ctx, leg(), leg())
							if resp != nil && resp.StatusCode == 429 && os.Getenv("SHARED_TRACE") != "" {
								t.Logf("%v pacer %d: 429 remaining=%d", time.Since(start), i, resp.RateLimit.Remaining)
							}
							return resp, err
						})
						if err != nil {
							t.Errorf("pacer %d: row failed: %v", i, err)
						}
						mu.Lock()
						last = time.Now()
						if d := last.Sub(start); d >= midFrom && d < midTo {
							midDone++
						}
						for active < want() {
							active++
							ww.Go(worker)
						}
						mu.Unlock()
					}
				}
				mu.Lock()
				for active < want() {
					active++
					ww.Go(worker)
				}
				mu.Unlock()
				ww.Wait()
				o.finish[i] = last.Sub(start)
				o.rates[i] = float64(midDone) / (midTo - midFrom).Seconds()
			})
		}
		if testing.Verbose() && os.Getenv("SHARED_TRACE") != "" {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				every, err := time.ParseDuration(os.Getenv("SHARED_TRACE"))
				if err != nil {
					every = time.Second
				}
				for sleep(ctx, every) == nil {
					var sb strings.Builder
					for _, p := range pacers {
						p.mu.Lock()
						net := p.model.est.net()
						g, gok := p.model.est.gross()
						fmt.Fprintf(&sb, " [f=%.2f r=%.1f m=%.1f n=%d l=%d net=%.1f/%v gross=%.1f/%v bound=%.1f shared=%v]", p.model.frac, p.model.mirrorRate, p.model.margin, p.stats.Requests, p.stats.RateLimited,
							net.rate, net.known, g, gok, p.model.est.bound(), p.model.sharing())
						if p.model.hidden {
							fmt.Fprintf(&sb, "[hidden hr=%.2f hp=%.2f]", p.model.hiddenRate, p.model.hiddenPeak)
						}
						p.mu.Unlock()
					}
					t.Logf("%v%s", time.Since(start).Round(every), sb.String())
				}
			}()
		}
		wg.Wait()
		for _, p := range pacers {
			st := p.Stats()
			o.requests += st.Requests
			o.l429 += st.RateLimited
		}
		for _, f := range o.finish {
			o.makespan = max(o.makespan, f)
		}
	})
	return o
}

func TestPacersShareABucket(t *testing.T) {
	const lat = 50 * time.Millisecond
	tests := []struct {
		sharedProfile
		maxRatio, max429, maxSpread float64
		slow                        bool // left out under the race detector
	}{
		{sharedProfile: sharedProfile{name: "alone 50/s", rate: 50, size: 50, latency: lat, pacers: 1, rows: 2000}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "2 on 50/s", rate: 50, size: 50, latency: lat, pacers: 2, rows: 1000}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1, slow: true},
		{sharedProfile: sharedProfile{name: "2 on enterprise", rate: 16, size: 50, latency: lat, pacers: 2, rows: 400}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on 50/s", rate: 50, size: 50, latency: lat, pacers: 4, rows: 500}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on 50/s, 32 workers each, started 30ms apart", rate: 50, size: 50, latency: lat, pacers: 4, rows: 500, workers: 32, jitter: 0.3, stagger: 30 * time.Millisecond}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on enterprise", rate: 16, size: 50, latency: lat, pacers: 4, rows: 200}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on private 100/s", rate: 100, size: 100, latency: lat, pacers: 4, rows: 1000}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1, slow: true},
		// A short run, where the start decides: four Pacers that each
		// see the bucket full must not all claim it again before their
		// answers show each other, nor the first to start take most of
		// it. Measured: none or one request of 372 answered 429, finish
		// times 2 to 8% apart; before, 0.3 to 3.9% and up to 55% apart.
		{sharedProfile: sharedProfile{name: "4 on enterprise, 93 rows each, started together", rate: 16, size: 50, latency: lat, jitter: 0.3, pacers: 4, rows: 93}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on enterprise, 93 rows each, started 20ms apart", rate: 16, size: 50, latency: lat, pacers: 4, rows: 93, stagger: 20 * time.Millisecond}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		// With --share 1/K each Pacer is capped at its share of the
		// refill the reset times show, taken mid-exchange (see
		// estimator.centred), which errs low by half a round trip over
		// the time to reset: 1.02 × the floor for two Pacers, 1.04 to
		// 1.08 for four.
		// Two halves of the enterprise bucket started 10 ms apart: a
		// claim of half the bucket counts as one a round trip must
		// check, though half of 50 tokens at the starting share is
		// below minClaim. When it did not, the two each claimed half of
		// the full bucket again on stale answers, 2 to 3% of requests
		// were answered 429, and the refused one, behind its cushion,
		// finished at 1.13 to 1.15 × the floor.
		{sharedProfile: sharedProfile{name: "2 on enterprise share 0.5, started 10ms apart", rate: 16, size: 50, latency: lat, jitter: 0.3, pacers: 2, rows: 185, stagger: 10 * time.Millisecond, cfg: func(c *Config) { c.Share = 0.5 }}, maxRatio: 1.05, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "2 on 50/s share 0.5", rate: 50, size: 50, latency: lat, pacers: 2, rows: 1000, cfg: func(c *Config) { c.Share = 0.5 }}, maxRatio: 1.045, max429: 0.01, maxSpread: 0.1},
		{sharedProfile: sharedProfile{name: "4 on 50/s share 0.25", rate: 50, size: 50, latency: lat, pacers: 4, rows: 500, cfg: func(c *Config) { c.Share = 0.25 }}, maxRatio: 1.10, max429: 0.015, maxSpread: 0.15},
		// A hidden limit: within 1.15 × its floor and no row lost; 3.2
		// to 5.1% of requests answered 429 over repeated runs (the target
		// is 5%): the first quarter of the announced bucket, 12 requests,
		// is sent before the first refusal comes back.
		{sharedProfile: sharedProfile{name: "hidden 2/s burst 10 under 50 @ 10/s", rate: 10, size: 50, latency: lat, pacers: 1, rows: 150, hiddenRate: 2, hiddenSize: 10}, maxRatio: 1.15, max429: 0.06, maxSpread: 1},
		{sharedProfile: sharedProfile{name: "alone 1000/s", rate: 1000, size: 500, latency: lat, pacers: 1, rows: 5000}, maxRatio: 1.05, max429: 0.01, maxSpread: 1, slow: true},
		{sharedProfile: sharedProfile{name: "alone 5000/s", rate: 5000, size: 2500, latency: lat, pacers: 1, rows: 25000}, maxRatio: 1.05, max429: 0.01, maxSpread: 1, slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.slow && raceEnabled {
				t.Skip("takes minutes under the race detector")
			}
			o := tt.run(t)
			o.check(t, tt.maxRatio, tt.max429)
			if s := o.spread(); s > tt.maxSpread {
				t.Errorf("finish times spread over %.1f%% of the makespan, want <= %.0f%%", 100*s, 100*tt.maxSpread)
			}
		})
	}
}

// TestRefusalsOfAnotherBucket: a tenant whose 429s show a bucket of 50,
// empty, full again now, while its accepted answers show another, nearly
// full bucket. Such a refusal is waited out: it must not wipe what the
// Pacer learned of the bucket nor slow it to a crawl. 12 rows, each
// refused once, take well under a second, not a minute.
func TestRefusalsOfAnotherBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 200, 10
		p := newPacer(t, cfg)
		var (
			mu      sync.Mutex
			refused = map[int]bool{}
		)
		rows := make(chan int, 12)
		for i := range 12 {
			rows <- i
		}
		close(rows)
		start := time.Now()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for row := range rows {
					_, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
						if err := sleep(ctx, 5*time.Millisecond); err != nil {
							return nil, err
						}
						now := time.Now()
						mu.Lock()
						first := !refused[row]
						refused[row] = true
						mu.Unlock()
						if first {
							rl := linker.RateLimit{Known: true, Limit: 50, Remaining: 0, Reset: now}
							return &linker.Response{StatusCode: 429, RateLimit: rl, Date: now},
								&linker.RateLimitError{APIError: *apiErr(429, "too_many_requests", "Too many requests"), Reset: now}
						}
						rl := linker.RateLimit{Known: true, Limit: 1_000_000, Remaining: 999_999, Reset: now}
						return &linker.Response{StatusCode: 201, RateLimit: rl, Date: now}, nil
					})
					if err != nil {
						t.Errorf("row %d: %v", row, err)
					}
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d > time.Second {
			t.Errorf("12 rows took %v, want under 1s", d)
		}
		if _, size, _ := p.Learned(); size != 1_000_000 {
			t.Errorf("Learned() bucket size = %d, want the accepted answers' 1000000", size)
		}
	})
}
