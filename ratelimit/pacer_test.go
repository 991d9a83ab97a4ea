package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// fast is a config whose token bucket never delays the few requests of a
// test, so that only hold-offs and backoff pauses take time.
func fast() Config {
	c := DefaultConfig()
	c.Rate, c.Burst, c.Seed = 1000, 100, 42
	return c
}

func newPacer(t *testing.T, cfg Config) *Pacer {
	t.Helper()
	p, err := New(cfg, linker.Retryable)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// within fails the test unless lo <= got <= hi.
func within(t *testing.T, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %v, want within [%v, %v]", what, got, lo, hi)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no retries", func(c *Config) { c.MaxRetries, c.MaxRateLimited = 0, 0 }, ""},
		{"explicit rate and burst", func(c *Config) { c.Rate, c.Burst = 16, 50 }, ""},
		{"explicit rate, learned burst", func(c *Config) { c.Rate = 16 }, ""},
		{"half share", func(c *Config) { c.Share = 0.5 }, ""},
		{"zero share means all", func(c *Config) { c.Share = 0 }, ""},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate must be"},
		{"NaN rate", func(c *Config) { c.Rate = math.NaN() }, "rate must be"},
		{"infinite rate", func(c *Config) { c.Rate = math.Inf(1) }, "rate must be"},
		{"negative burst", func(c *Config) { c.Burst = -1 }, "burst must be"},
		{"share above 1", func(c *Config) { c.Share = 1.5 }, "share must be"},
		{"negative share", func(c *Config) { c.Share = -0.5 }, "share must be"},
		{"NaN share", func(c *Config) { c.Share = math.NaN() }, "share must be"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "max retries"},
		{"negative 429 budget", func(c *Config) { c.MaxRateLimited = -1 }, "max rate-limited"},
		{"zero min backoff", func(c *Config) { c.MinBackoff = 0 }, "min backoff"},
		{"max below min backoff", func(c *Config) { c.MaxBackoff = c.MinBackoff - 1 }, "max backoff"},
		{"zero max hold", func(c *Config) { c.MaxHold = 0 }, "max hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.give(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, nerr := New(cfg, linker.Retryable); nerr == nil {
				t.Errorf("New accepted a config Validate rejects")
			}
		})
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	err := Config{Rate: -1, Burst: -1, Share: 2}.Validate()
	for _, want := range []string{"rate", "burst", "share", "min backoff", "max hold"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestLimitAndBurst(t *testing.T) {
	tests := []struct {
		name               string
		rate               float64
		burst              int
		answer             *linker.Response // nil: no answer yet
		wantLimit          float64
		wantBurst, learned int
	}{
		{name: "learned, before any answer", wantLimit: startRate, wantBurst: 1},
		{name: "explicit, before any answer", rate: 16, burst: 50, wantLimit: 16, wantBurst: 1},
		{name: "explicit, answer without headers", rate: 16, burst: 50, answer: &linker.Response{StatusCode: 201}, wantLimit: 16, wantBurst: 50},
		{name: "learned, answer without headers", answer: &linker.Response{StatusCode: 201}, wantLimit: startRate, wantBurst: 1},
		{name: "learned, tenant bucket of 50", answer: answer(50, 49), wantLimit: startRate, wantBurst: 50, learned: 50},
		{name: "explicit burst above the tenant's", rate: 16, burst: 80, answer: answer(50, 49), wantLimit: 16, wantBurst: 50, learned: 50},
		{name: "explicit burst below the tenant's", rate: 16, burst: 10, answer: answer(50, 49), wantLimit: 16, wantBurst: 10, learned: 50},
		{name: "explicit rate below the start", rate: 1, answer: answer(50, 49), wantLimit: 1, wantBurst: 50, learned: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rate, cfg.Burst = tt.rate, tt.burst
			p := newPacer(t, cfg)
			if tt.answer != nil {
				p.observeLink(tt.answer, nil)
			}
			if p.Limit() != tt.wantLimit || p.Burst() != tt.wantBurst {
				t.Errorf("Limit, Burst = %v, %d; want %v, %d", p.Limit(), p.Burst(), tt.wantLimit, tt.wantBurst)
			}
			if _, burst, known := p.Learned(); burst != tt.learned || known {
				t.Errorf("Learned() burst, known = %d, %v; want %d, false", burst, known, tt.learned)
			}
		})
	}
}

// answer is a 201 whose headers show a bucket of limit with remaining left.
func answer(limit, remaining int) *linker.Response {
	return &linker.Response{StatusCode: 201, RateLimit: linker.RateLimit{
		Known: true, Limit: limit, Remaining: remaining, Reset: time.Now().Add(time.Second),
	}}
}

func TestWaitPaces(t *testing.T) {
	tests := []struct {
		name           string
		rate           float64
		burst, workers int
		perWorker      int
	}{
		{"one worker", 10, 3, 1, 23},
		{"eight workers", 10, 3, 8, 5},
		{"burst one", 2, 1, 4, 4},
		{"fractional rate", 2.5, 5, 6, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Rate, cfg.Burst = tt.rate, tt.burst
				p := newPacer(t, cfg)
				// The tenant's answers carry no rate-limit headers: the
				// configured rate and burst apply as they are.
				p.observeLink(&linker.Response{StatusCode: 201}, nil)
				start := time.Now()
				var (
					mu     sync.Mutex
					grants []time.Duration
					wg     sync.WaitGroup
				)
				for range tt.workers {
					wg.Go(func() {
						for range tt.perWorker {
							if err := p.waitTurn(t.Context()); err != nil {
								t.Errorf("Wait: %v", err)
								return
							}
							mu.Lock()
							grants = append(grants, time.Since(start))
							mu.Unlock()
						}
					})
				}
				wg.Wait()

				n := tt.workers * tt.perWorker
				interval := time.Duration(float64(time.Second) / tt.rate)
				slack := time.Millisecond
				want := time.Duration(n-tt.burst) * interval
				within(t, "time for all requests", time.Since(start), want-slack, want+slack)
				// No prefix of the grants outran the bucket: grant i (from 0)
				// came no earlier than (i+1-burst) intervals after the start.
				slices.Sort(grants)
				for i, g := range grants {
					if earliest := time.Duration(max(0, i+1-tt.burst)) * interval; g < earliest-slack {
						t.Fatalf("grant %d at %v, before %v", i, g, earliest)
					}
				}
			})
		})
	}
}

func TestObserveHold(t *testing.T) {
	jitter := DefaultConfig().MinBackoff
	tests := []struct {
		name string
		// reset and date are offsets from the start; noDate means the
		// response had no Date header.
		reset, date    time.Duration
		noReset        bool
		noDate         bool
		wantLo, wantHi time.Duration
	}{
		{name: "reset 5s ahead", reset: 5 * time.Second, noDate: true, wantLo: 5 * time.Second, wantHi: 5*time.Second + jitter},
		{name: "reset relative to a server clock 100s behind", reset: -97 * time.Second, date: -100 * time.Second, wantLo: 3 * time.Second, wantHi: 3*time.Second + jitter},
		{name: "reset relative to a server clock 100s ahead", reset: 104 * time.Second, date: 100 * time.Second, wantLo: 4 * time.Second, wantHi: 4*time.Second + jitter},
		{name: "far reset capped at MaxHold", reset: time.Hour, noDate: true, wantLo: time.Minute, wantHi: time.Minute + jitter},
		// The first backoff is within [MinBackoff, 2·MinBackoff].
		{name: "no reset holds a backoff", noReset: true, noDate: true, wantLo: jitter, wantHi: 2*jitter + jitter},
		{name: "past reset holds a backoff", reset: -10 * time.Second, noDate: true, wantLo: jitter, wantHi: 2*jitter + jitter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, fast())
				start := time.Now()
				resp := &linker.Response{StatusCode: 429}
				if !tt.noDate {
					resp.Date = start.Add(tt.date)
				}
				var reset time.Time
				if !tt.noReset {
					reset = start.Add(tt.reset)
				}
				p.observeLink(resp, limitErr(reset))
				if err := p.waitTurn(t.Context()); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				within(t, "hold", time.Since(start), tt.wantLo, tt.wantHi)
				st := p.Stats()
				within(t, "Stats().Hold", st.Hold, tt.wantLo, time.Since(start))
				if st.Requests != 1 || st.RateLimited != 1 {
					t.Errorf("Stats() = %+v, want 1 request, 1 rate-limited", st)
				}
			})
		})
	}
}

func TestHoldStopsAllWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fast()
		p := newPacer(t, cfg)
		start := time.Now()
		reset := start.Add(5 * time.Second)
		p.observeLink(&linker.Response{StatusCode: 429}, limitErr(reset))

		woke := make([]time.Time, 8)
		var wg sync.WaitGroup
		for i := range woke {
			wg.Go(func() {
				if err := p.waitTurn(t.Context()); err != nil {
					t.Errorf("Wait: %v", err)
				}
				woke[i] = time.Now()
			})
		}
		wg.Wait()
		distinct := map[time.Time]bool{}
		for i, w := range woke {
			within(t, fmt.Sprintf("worker %d hold", i), w.Sub(start), 5*time.Second, 5*time.Second+cfg.MinBackoff)
			distinct[w] = true
		}
		if len(distinct) < 2 {
			t.Errorf("all %d workers woke at the same instant, want jitter", len(woke))
		}
	})
}

func TestHoldCatchesWorkerQueuedForToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 1, 1
		p := newPacer(t, cfg)
		start := time.Now()
		if err := p.waitTurn(t.Context()); err != nil { // takes the only token
			t.Fatal(err)
		}
		var woke time.Duration
		var wg sync.WaitGroup
		wg.Go(func() { // queues for the next token, due at 1s
			if err := p.waitTurn(t.Context()); err != nil {
				t.Errorf("Wait: %v", err)
			}
			woke = time.Since(start)
		})
		time.Sleep(100 * time.Millisecond)
		p.observeLink(&linker.Response{StatusCode: 429}, limitErr(start.Add(5*time.Second)))
		wg.Wait()
		within(t, "queued worker's wait", woke, 5*time.Second, 5*time.Second+cfg.MinBackoff)
	})
}

// TestHoldWakesWaitersInLine: workers in line at the slow starting pace
// hold reservations many seconds ahead. A refusal's hold-off takes them out
// of line; once it ends and an answer shows the tenant's bucket nearly
// full, they must all go at once, not sleep out the reservations they had.
func TestHoldWakesWaitersInLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, DefaultConfig())
		start := time.Now()
		g, err := p.wait(t.Context()) // takes the only token
		if err != nil {
			t.Fatal(err)
		}
		const workers = 10 // in line at 2/s: the last one due in 5s
		woke := make([]time.Duration, workers)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				if err := p.waitTurn(t.Context()); err != nil {
					t.Errorf("Wait: %v", err)
				}
				woke[i] = time.Since(start)
			})
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		now := time.Now()
		// Refused, the bucket empty: the hold-off lasts one token's
		// refill, 40ms of a bucket of 50 full again within 2s.
		p.observe(g, Answer{Arrived: true, Limit: 50, Remaining: 0, Reset: now.Add(2 * time.Second), Date: now, RateLimited: true})
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		// The hold is over; the bucket shows 49 tokens, a quarter of
		// which the Pacer claims at first: 12, enough for every worker.
		now = time.Now()
		p.observe(grant{}, Answer{Arrived: true, Limit: 50, Remaining: 49, Reset: now.Add(time.Second), Date: now})
		wg.Wait()
		for i, w := range woke {
			if w > time.Second {
				t.Errorf("worker %d went after %v, want within 1s: the tokens were there at 0.4s", i, w)
			}
		}
	})
}

func TestHoldNeverShrinks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, fast())
		start := time.Now()
		p.observeLink(nil, limitErr(start.Add(5*time.Second)))
		time.Sleep(time.Second)
		p.observeLink(nil, limitErr(start.Add(3*time.Second))) // earlier: ignored
		if got := p.Stats().Hold; got != 5*time.Second {
			t.Errorf("Hold after an earlier reset = %v, want 5s", got)
		}
		p.observeLink(nil, limitErr(start.Add(8*time.Second))) // later: extends
		if got := p.Stats().Hold; got != 8*time.Second {
			t.Errorf("Hold after a later reset = %v, want 8s", got)
		}
		if err := p.waitTurn(t.Context()); err != nil {
			t.Fatal(err)
		}
		within(t, "hold", time.Since(start), 8*time.Second, 8*time.Second+fast().MinBackoff)
	})
}

func TestHoldWithoutResetGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fast()
		cfg.MinBackoff = time.Second
		p := newPacer(t, cfg)
		// Consecutive 429s without a reset: backoff ceilings 2s, 4s, 8s.
		for i, hi := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
			before := p.Stats().Hold
			p.observeLink(nil, limitErr(time.Time{}))
			within(t, fmt.Sprintf("hold %d", i+1), p.Stats().Hold-before, hi/2, hi)
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		// A success ends the streak.
		p.observeLink(&linker.Response{StatusCode: 201}, nil)
		before := p.Stats().Hold
		p.observeLink(nil, limitErr(time.Time{}))
		within(t, "hold after a success", p.Stats().Hold-before, time.Second, 2*time.Second)
	})
}

func TestWaitReturnsContextError(t *testing.T) {
	t.Run("already cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Burst = 1
			p := newPacer(t, cfg)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := p.waitTurn(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v, want context.Canceled", err)
			}
			start := time.Now()
			if err := p.waitTurn(t.Context()); err != nil || time.Since(start) != 0 {
				t.Errorf("Wait after a cancelled one took %v (%v), want the unspent token at once", time.Since(start), err)
			}
		})
	})
	t.Run("cancelled while queued for a token", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rate, cfg.Burst = 1, 1
			p := newPacer(t, cfg)
			start := time.Now()
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(100*time.Millisecond, cancel)
			if err := p.waitTurn(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v, want context.Canceled", err)
			}
			if got := time.Since(start); got != 100*time.Millisecond {
				t.Errorf("Wait returned after %v, want 100ms", got)
			}
			// The cancelled reservation was given back: the next token is
			// due at 1s, not 2s.
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(start); got != time.Second {
				t.Errorf("next Wait returned at %v, want 1s", got)
			}
		})
	})
	t.Run("deadline during hold", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			start := time.Now()
			p.observeLink(nil, limitErr(start.Add(30*time.Second)))
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := p.waitTurn(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want context.DeadlineExceeded", err)
			}
			if got := time.Since(start); got != time.Second {
				t.Errorf("Wait returned after %v, want 1s", got)
			}
		})
	})
}

// script returns an op that answers with errs in turn (nil meaning success)
// and a pointer to the number of calls.
func script(errs ...error) (func(context.Context) (*linker.Response, error), *int) {
	calls := 0
	return func(context.Context) (*linker.Response, error) {
		err := errs[min(calls, len(errs)-1)]
		calls++
		status := 201
		var ae *linker.APIError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		if err != nil && status == 201 {
			return nil, err // transport failure: no response
		}
		return &linker.Response{StatusCode: status}, err
	}, &calls
}

func TestDoGivesUpAfterMaxRetries(t *testing.T) {
	tests := []struct {
		name string
		give error
	}{
		{"503", serverErr()},
		{"500", apiErr(500, "", "Internal Server Error")},
		{"408", apiErr(408, "", "")},
		{"connection refused", refused()},
		{"per-attempt timeout", &url.Error{Op: "Post", URL: linkURL, Err: context.DeadlineExceeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := fast()
				cfg.MaxRetries = 3
				p := newPacer(t, cfg)
				op, calls := script(tt.give)
				start := time.Now()
				attempts, _, err := p.doLink(t.Context(), op)
				if attempts != 4 || *calls != 4 {
					t.Errorf("attempts = %d, calls = %d; want 4, 4", attempts, *calls)
				}
				if !errors.Is(err, ErrRetriesExhausted) || !errors.Is(err, tt.give) {
					t.Errorf("Do error = %v, want ErrRetriesExhausted wrapping %v", err, tt.give)
				}
				// Pauses before retries 1, 2, 3: [m,2m] + [2m,4m] + [4m,8m].
				m := cfg.MinBackoff
				within(t, "time spent", time.Since(start), 7*m, 14*m)
				if st := p.Stats(); st.Requests != 4 || st.Retries != 3 || st.RateLimited != 0 {
					t.Errorf("Stats() = %+v, want 4 requests, 3 retries", st)
				}
			})
		})
	}
}

func TestDoExhaustedErrorKeepsAPIError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fast()
		cfg.MaxRetries = 2
		p := newPacer(t, cfg)
		op, _ := script(serverErr())
		attempts, resp, err := p.doLink(t.Context(), op)
		var ae *linker.APIError
		if !errors.Is(err, ErrRetriesExhausted) || !errors.As(err, &ae) || ae.Status != 503 {
			t.Fatalf("Do error = %v, want ErrRetriesExhausted and a 503 *linker.APIError", err)
		}
		if attempts != 3 || resp == nil || resp.StatusCode != 503 {
			t.Errorf("attempts, resp = %d, %+v; want 3 and the last 503 response", attempts, resp)
		}
	})
}

func TestDoRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, fast())
		op, calls := script(apiErr(502, "", ""), connReset(), nil)
		attempts, resp, err := p.doLink(t.Context(), op)
		if err != nil || attempts != 3 || *calls != 3 {
			t.Fatalf("Do = %d, %v; calls %d; want 3 attempts, success", attempts, err, *calls)
		}
		if resp == nil || resp.StatusCode != 201 {
			t.Errorf("resp = %+v, want the 201", resp)
		}
	})
}

func TestDoDoesNotRetryFinalErrors(t *testing.T) {
	tests := []struct {
		name string
		give error
	}{
		{"400", badRequest()},
		{"401", apiErr(401, "invalid_token", "Invalid token.")},
		{"404", apiErr(404, "inexistent_user", "User not found.")},
		{"409", apiErr(409, "", linker.MsgIdentityExists)},
		{"501", apiErr(501, "", "")},
		{"other error", errors.New("decode identities: unexpected end of JSON input")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, fast())
				op, calls := script(tt.give, nil)
				start := time.Now()
				attempts, _, err := p.doLink(t.Context(), op)
				if attempts != 1 || *calls != 1 {
					t.Errorf("attempts = %d, calls = %d; want 1, 1", attempts, *calls)
				}
				if err != tt.give {
					t.Errorf("Do error = %v, want %v as is", err, tt.give)
				}
				if time.Since(start) != 0 {
					t.Errorf("Do took %v, want no pause", time.Since(start))
				}
			})
		})
	}
}

func TestDoWaitsOutRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fast()
		cfg.MaxRetries = 0 // 429s have their own budget
		p := newPacer(t, cfg)
		start := time.Now()
		op, calls := script(limitErr(start.Add(2*time.Second)), nil)
		attempts, _, err := p.doLink(t.Context(), op)
		if err != nil || attempts != 2 || *calls != 2 {
			t.Fatalf("Do = %d, %v; want success on attempt 2", attempts, err)
		}
		within(t, "time spent", time.Since(start), 2*time.Second, 2*time.Second+cfg.MinBackoff)
		if st := p.Stats(); st.Requests != 2 || st.RateLimited != 1 || st.Retries != 1 || st.Hold != 2*time.Second {
			t.Errorf("Stats() = %+v, want 2 requests, 1 rate-limited, 1 retry, 2s held", st)
		}
	})
}

func TestDoGivesUpAfterMaxRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fast()
		cfg.MaxRateLimited = 2
		p := newPacer(t, cfg)
		calls := 0
		op := func(context.Context) (*linker.Response, error) {
			calls++
			return &linker.Response{StatusCode: 429}, limitErr(time.Now().Add(time.Second))
		}
		attempts, _, err := p.doLink(t.Context(), op)
		var rl *linker.RateLimitError
		if !errors.Is(err, ErrRetriesExhausted) || !errors.As(err, &rl) {
			t.Fatalf("Do error = %v, want ErrRetriesExhausted and a *linker.RateLimitError", err)
		}
		if attempts != 3 || calls != 3 {
			t.Errorf("attempts = %d, calls = %d; want 3, 3", attempts, calls)
		}
	})
}

func TestDoStopsOnCancel(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(*Config)
		give     func(now time.Time) error
		wantLast error // what errors.As must still find
	}{
		{
			name:     "during backoff",
			cfg:      func(c *Config) { c.MinBackoff, c.MaxBackoff = 10*time.Second, time.Minute },
			give:     func(time.Time) error { return serverErr() },
			wantLast: &linker.APIError{},
		},
		{
			name:     "during hold",
			cfg:      func(*Config) {},
			give:     func(now time.Time) error { return limitErr(now.Add(30 * time.Second)) },
			wantLast: &linker.RateLimitError{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := fast()
				tt.cfg(&cfg)
				p := newPacer(t, cfg)
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(time.Second, cancel)
				start := time.Now()
				calls := 0
				attempts, _, err := p.doLink(ctx, func(context.Context) (*linker.Response, error) {
					calls++
					return nil, tt.give(time.Now())
				})
				if got := time.Since(start); got != time.Second {
					t.Errorf("Do returned after %v, want 1s (at the cancel)", got)
				}
				if attempts != 1 || calls != 1 {
					t.Errorf("attempts = %d, calls = %d; want 1, 1", attempts, calls)
				}
				if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRetriesExhausted) {
					t.Errorf("Do error = %v, want context.Canceled and not ErrRetriesExhausted", err)
				}
				switch want := tt.wantLast.(type) {
				case *linker.APIError:
					if !errors.As(err, &want) {
						t.Errorf("Do error = %v, want it to keep the last *linker.APIError", err)
					}
				case *linker.RateLimitError:
					if !errors.As(err, &want) {
						t.Errorf("Do error = %v, want it to keep the last *linker.RateLimitError", err)
					}
				}
			})
		})
	}
}

func TestDoCancelledDuringAttempt(t *testing.T) {
	t.Run("transport error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			ctx, cancel := context.WithCancel(t.Context())
			calls := 0
			attempts, _, err := p.doLink(ctx, func(ctx context.Context) (*linker.Response, error) {
				calls++
				cancel()
				<-ctx.Done()
				return nil, &url.Error{Op: "Post", URL: linkURL, Err: ctx.Err()}
			})
			if attempts != 1 || calls != 1 || !errors.Is(err, context.Canceled) {
				t.Errorf("Do = %d attempts (%d calls), %v; want 1, context.Canceled", attempts, calls, err)
			}
		})
	})
	t.Run("retryable answer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			ctx, cancel := context.WithCancel(t.Context())
			attempts, _, err := p.doLink(ctx, func(context.Context) (*linker.Response, error) {
				cancel()
				return &linker.Response{StatusCode: 503}, serverErr()
			})
			var ae *linker.APIError
			if attempts != 1 || !errors.Is(err, context.Canceled) || !errors.As(err, &ae) {
				t.Errorf("Do = %d attempts, %v; want 1, context.Canceled with the 503", attempts, err)
			}
		})
	})
	t.Run("final answer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			ctx, cancel := context.WithCancel(t.Context())
			give := badRequest()
			_, _, err := p.doLink(ctx, func(context.Context) (*linker.Response, error) {
				cancel()
				return &linker.Response{StatusCode: 400}, give
			})
			if err != give {
				t.Errorf("Do error = %v, want the 400 as is: the answer is final", err)
			}
		})
	})
	t.Run("success", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			ctx, cancel := context.WithCancel(t.Context())
			attempts, resp, err := p.doLink(ctx, func(context.Context) (*linker.Response, error) {
				cancel()
				return &linker.Response{StatusCode: 201}, nil
			})
			if attempts != 1 || err != nil || resp.StatusCode != 201 {
				t.Errorf("Do = %d, %+v, %v; want the success reported", attempts, resp, err)
			}
		})
	})
	t.Run("already cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, fast())
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			calls := 0
			attempts, _, err := p.doLink(ctx, func(context.Context) (*linker.Response, error) {
				calls++
				return nil, nil
			})
			if attempts != 0 || calls != 0 || !errors.Is(err, context.Canceled) {
				t.Errorf("Do = %d attempts (%d calls), %v; want 0, context.Canceled", attempts, calls, err)
			}
		})
	})
}

func TestDoConcurrentWorkersShareHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, fast())
		start := time.Now()
		reset := start.Add(3 * time.Second)
		var (
			mu   sync.Mutex
			sent []time.Duration
		)
		op := func(context.Context) (*linker.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, time.Since(start))
			if len(sent) == 1 {
				return &linker.Response{StatusCode: 429}, limitErr(reset)
			}
			return &linker.Response{StatusCode: 201}, nil
		}
		do := func() {
			if attempts, _, err := p.doLink(t.Context(), op); err != nil {
				t.Errorf("Do = %d, %v; want success", attempts, err)
			}
		}
		var wg sync.WaitGroup
		wg.Go(do)
		synctest.Wait() // the first worker got its 429 and is holding
		for range 5 {
			wg.Go(do)
		}
		wg.Wait()
		if len(sent) != 7 {
			t.Fatalf("%d requests sent, want 7 (6 workers, one retry)", len(sent))
		}
		for i, s := range sent[1:] {
			within(t, fmt.Sprintf("request %d sent at", i+1), s, 3*time.Second, 3*time.Second+fast().MinBackoff)
		}
	})
}

// warmUp sends n requests through p to m, two at a time, each taking 20ms,
// so that p learns the tenant's rate.
func warmUp(t *testing.T, p *Pacer, m *tenantModel, n int) {
	t.Helper()
	rows := make(chan int, n)
	for i := range n {
		rows <- i
	}
	close(rows)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range rows {
				if _, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
					return m.call(ctx, 10*time.Millisecond, 0, 10*time.Millisecond)
				}); err != nil {
					t.Errorf("Do: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func TestHoldAfter429EndsAtNextToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, DefaultConfig())
		m := newTenantModel(10, 20, 0)
		warmUp(t, p, m, 120)
		rate, _, known := p.Learned()
		if !known || math.Abs(rate/10-1) > 0.05 {
			t.Fatalf("Learned() rate = %.3f (known %v), want about 10", rate, known)
		}

		// Another client empties the bucket; the next answer is a 429
		// whose reset, 5s away, would have every worker wait 5s, and
		// whose headers alone (20 tokens missing by then) would say 250ms
		// a token.
		start := time.Now()
		reset := start.Add(5 * time.Second)
		p.observeLink(&linker.Response{StatusCode: 429, Date: start, RateLimit: linker.RateLimit{
			Known: true, Limit: 20, Remaining: 0, Reset: reset,
		}}, limitErr(reset))
		token := time.Duration(float64(time.Second) / rate)
		pace := time.Duration(float64(time.Second) / p.Limit()) // slowed by the 429

		// Five workers were waiting: the first leaves when one token is
		// back, the others a paced token apart.
		var (
			mu   sync.Mutex
			woke []time.Duration
			wg   sync.WaitGroup
		)
		for range 5 {
			wg.Go(func() {
				if err := p.waitTurn(t.Context()); err != nil {
					t.Errorf("Wait: %v", err)
				}
				mu.Lock()
				woke = append(woke, time.Since(start))
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(woke)
		within(t, "first request after the 429", woke[0], token-time.Millisecond, pace+time.Millisecond)
		for i := 1; i < len(woke); i++ {
			within(t, fmt.Sprintf("gap before request %d", i+1), woke[i]-woke[i-1], pace/2, pace+time.Millisecond)
		}
	})
}

func TestHoldAfter429WithUnknownRateUsesHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, fast())
		start := time.Now()
		// 20 tokens missing, full again in 4s: one token takes 200ms.
		reset := start.Add(4 * time.Second)
		p.observeLink(&linker.Response{StatusCode: 429, Date: start, RateLimit: linker.RateLimit{
			Known: true, Limit: 20, Remaining: 0, Reset: reset,
		}}, limitErr(reset))
		if err := p.waitTurn(t.Context()); err != nil {
			t.Fatal(err)
		}
		within(t, "hold", time.Since(start), 200*time.Millisecond, 200*time.Millisecond)
	})
}

func TestFirstAnswerReleasesBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, DefaultConfig())
		start := time.Now()
		if err := p.waitTurn(t.Context()); err != nil { // the probe
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		if err := p.waitTurn(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Wait before any answer = %v, want it held back", err)
		}
		cancel()
		// The tenant answers: a bucket of 50, 49 left. Not knowing yet
		// whether other clients draw on it, the Pacer claims a quarter
		// at once (see fracStart); its claim doubles every round trip.
		p.observeLink(answer(50, 49), nil)
		burst := int(math.Floor(fracStart * 49))
		for i := range burst {
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(start); got != 100*time.Millisecond {
				t.Fatalf("request %d of the burst left at %v, want at once (100ms)", i+2, got)
			}
		}
		// One more request probeAfter later, whose answer shows whether
		// others claimed the same tokens meanwhile; then none until an
		// answer comes.
		if err := p.waitTurn(t.Context()); err != nil {
			t.Fatal(err)
		}
		probe := 100*time.Millisecond + probeAfter
		within(t, "the probe after the burst left at", time.Since(start), probe-time.Millisecond, probe)
		ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := p.waitTurn(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait after the %d tokens claimed and the probe = %v, want it held back", burst, err)
		}
	})
}

func TestMirrorDrainsToRemaining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 100, 100
		p := newPacer(t, cfg)
		p.model.frac = 1 // it claims the whole bucket
		p.observeLink(answer(100, 99), nil)
		// Another client took most of the bucket: 3 tokens are left.
		p.observeLink(answer(100, 3), nil)
		start := time.Now()
		for i := range 4 {
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(start); (i < 3) != (got == 0) {
				t.Errorf("request %d left at %v; want the first 3 at once, the 4th later", i+1, got)
			}
		}
	})
}

func TestConcurrency(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		latency time.Duration
		max     int
		want    int
	}{
		{name: "16/s at 250ms", rate: 16, latency: 250 * time.Millisecond, want: 6},
		{name: "100/s at 250ms", rate: 100, latency: 250 * time.Millisecond, want: 33},
		{name: "capped", rate: 100, latency: 250 * time.Millisecond, max: 8, want: 8},
		{name: "2/s at 20ms", rate: 2, latency: 20 * time.Millisecond, want: 2},
		{name: "no latency", rate: 16, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rate, cfg.Burst = tt.rate, 1
			p := newPacer(t, cfg)
			p.observeLink(&linker.Response{StatusCode: 201}, nil) // no headers: the rate is as configured
			if got := p.inFlight(tt.latency, tt.max); got != tt.want {
				t.Errorf("Concurrency(%v, %d) = %d, want %d", tt.latency, tt.max, got, tt.want)
			}
		})
	}
	t.Run("rate not learned yet", func(t *testing.T) {
		p := newPacer(t, DefaultConfig())
		if got := p.inFlight(250*time.Millisecond, 64); got != 64 {
			t.Errorf("Concurrency before the rate is known = %d, want the maximum, 64", got)
		}
	})
}

func TestProbeSpendsTokensLeftUnused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, DefaultConfig())
		// The tenant counts each request as it arrives and answers 250ms
		// later: the level, which takes remaining as read midway through
		// the round trip, puts the tenant's bucket two tokens lower than
		// it is.
		m := newTenantModel(16, 50, 0)
		const n = 500
		rows := make(chan int, n)
		for i := range n {
			rows <- i
		}
		close(rows)
		var (
			mu        sync.Mutex
			remaining []int
			wg        sync.WaitGroup
		)
		for range 8 {
			wg.Go(func() {
				for range rows {
					_, resp, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
						return m.call(ctx, time.Millisecond, 250*time.Millisecond, time.Millisecond)
					})
					if err != nil {
						t.Errorf("Do: %v", err)
						continue
					}
					mu.Lock()
					remaining = append(remaining, resp.RateLimit.Remaining)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if st := p.Stats(); st.RateLimited > 0 {
			t.Errorf("%d of %d requests got 429, want none", st.RateLimited, st.Requests)
		}
		// Paced at the refill, each request finds the bucket as low as
		// the Pacer dares: remaining reads 1 (a token kept so that a
		// drift shows), not 2 or more.
		last := slices.Clone(remaining[len(remaining)-200 : len(remaining)-20])
		slices.Sort(last)
		if med := last[len(last)/2]; med > 1 {
			t.Errorf("median remaining over answers %d-%d = %d, want <= 1; sorted: %v", n-200, n-20, med, last)
		}

		// A 429 takes half the raise back.
		p.mu.Lock()
		raised := p.model.slack
		p.mu.Unlock()
		if raised < 1 {
			t.Fatalf("slack = %v after the run, want >= 1", raised)
		}
		now := time.Now()
		p.observeLink(&linker.Response{StatusCode: 429, Date: now, RateLimit: linker.RateLimit{
			Known: true, Limit: 50, Remaining: 0, Reset: now.Add(4 * time.Second),
		}}, limitErr(now.Add(4*time.Second)))
		p.mu.Lock()
		defer p.mu.Unlock()
		if want := math.Floor(raised / 2); p.model.slack != want {
			t.Errorf("slack after a 429 = %v, want %v (half of %v)", p.model.slack, want, raised)
		}
	})
}

func TestInFlightFollowsThePace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 1000, 500
		p := newPacer(t, cfg)
		if got := p.InFlight(2000); got != startInFlight {
			t.Errorf("InFlight before any answer = %d, want %d", got, startInFlight)
		}
		// A tenant that says nothing of its bucket, answering in 50ms:
		// the configured 1,000/s applies, and 1.25 × 1,000/s × 50ms + 1
		// requests keep it up, plus one for each of the 500 tokens of
		// the burst, full again, to spend it at once.
		if _, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
			time.Sleep(50 * time.Millisecond)
			return &linker.Response{StatusCode: 201}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := p.InFlight(2000); got != 564 {
			t.Errorf("InFlight at 1,000/s and 50ms with the burst of 500 full = %d, want 564", got)
		}
		if got := p.InFlight(40); got != 40 {
			t.Errorf("InFlight capped at 40 = %d, want 40", got)
		}
		if got := p.InFlight(8); got != 8 {
			t.Errorf("InFlight capped at 8 = %d, want 8", got)
		}
		// The burst spent, the pace alone is left to keep up.
		for range 500 {
			if err := p.waitTurn(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if got := p.InFlight(2000); got != 64 {
			t.Errorf("InFlight at 1,000/s and 50ms with the burst spent = %d, want 64", got)
		}
	})
}

func TestInFlightWantsNoTokensHeldBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 1000, 500
		p := newPacer(t, cfg)
		if _, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
			time.Sleep(50 * time.Millisecond)
			return &linker.Response{StatusCode: 201}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := p.InFlight(2000); got != 564 {
			t.Fatalf("InFlight with the burst of 500 full = %d, want 564", got)
		}
		// A refusal holds every request back: no request is wanted for
		// the burst's tokens until the hold ends.
		now := time.Now()
		p.observeLink(&linker.Response{StatusCode: 429, Date: now}, limitErr(now.Add(time.Second)))
		if got := p.InFlight(2000); got != 64 {
			t.Errorf("InFlight during a hold-off = %d, want 64", got)
		}
	})
}
