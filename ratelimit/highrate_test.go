package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// poolMost is the most rows in flight batch's pool allows by default
// (batch.DefaultConfig().Workers).
const poolMost = 2000

// runPool links n rows against a model tenant of rate and size, in fake
// time, with workers started as batch's pool starts them: before each row
// is handed out, as many as InFlight(poolMost) asks for, never stopped,
// and the row handed out once fewer rows are in flight than that. It
// returns the makespan, the floor (the bucket at once, then the refill,
// then one latency), the 429 answers per request, the most workers, and
// what the Pacer learned of the tenant's rate (see Pacer.Learned).
func runPool(t *testing.T, rate float64, size, n int, latency time.Duration) (makespan, floor time.Duration, share429 float64, workers int, learned float64, known bool) {
	t.Helper()
	floor = time.Duration(float64(n-size)/rate*float64(time.Second)) + latency
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Seed = 7
		p := newPacer(t, cfg)
		m := newTenantModel(rate, size, 3300*time.Millisecond)
		jobs := make(chan int)
		var busy atomic.Int64 // rows handed out and not done
		freed := make(chan struct{}, 1)
		var (
			mu   sync.Mutex
			last time.Time
			wg   sync.WaitGroup
		)
		start := time.Now()
		worker := func() {
			for range jobs {
				_, _, err := p.doLink(t.Context(), func(ctx context.Context) (*linker.Response, error) {
					return m.call(ctx, latency/2, 0, latency/2)
				})
				if err != nil {
					t.Errorf("row failed: %v", err)
				}
				busy.Add(-1)
				select {
				case freed <- struct{}{}:
				default:
				}
				mu.Lock()
				last = time.Now()
				mu.Unlock()
			}
		}
		for i := range n {
			for {
				want := p.InFlight(poolMost)
				for workers < want {
					workers++
					wg.Go(worker)
				}
				if busy.Load() < int64(want) {
					busy.Add(1)
					break
				}
				<-freed
			}
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		makespan = last.Sub(start)
		st := p.Stats()
		share429 = float64(st.RateLimited) / float64(max(st.Requests, 1))
		learned, _, known = p.Learned()
	})
	return makespan, floor, share429, workers, learned, known
}

// TestPoolReachesHighRates: one Pacer, its workers grown as batch's pool
// grows them, alone on a Private Cloud tenant (1,000 to 5,000 requests/s,
// a burst of half that, 50ms of latency) spends the burst at once and
// keeps up the refill: within 1.05 × the floor, at most 1% of requests
// answered 429, the tenant's rate learned within 5%.
func TestPoolReachesHighRates(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		size int
		rows int
		slow bool // left out under the race detector
	}{
		{name: "1000/s", rate: 1000, size: 500, rows: 8000},
		{name: "2000/s", rate: 2000, size: 1000, rows: 16000, slow: true},
		{name: "5000/s", rate: 5000, size: 2500, rows: 40000, slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.slow && raceEnabled {
				t.Skip("takes minutes under the race detector")
			}
			makespan, floor, share429, workers, learned, known := runPool(t, tt.rate, tt.size, tt.rows, 50*time.Millisecond)
			ratio := float64(makespan) / float64(floor)
			t.Logf("makespan/floor=%.3f (%v/%v) 429/req=%.4f workers=%d learned=%.1f known=%v",
				ratio, makespan.Round(time.Millisecond), floor, share429, workers, learned, known)
			if ratio > 1.05 {
				t.Errorf("makespan %v is %.3f × the floor %v, want <= 1.05", makespan, ratio, floor)
			}
			if share429 > 0.01 {
				t.Errorf("%.2f%% of requests got 429, want <= 1%%", 100*share429)
			}
			if !known || learned < 0.95*tt.rate || learned > 1.05*tt.rate {
				t.Errorf("Learned() = %.1f/s (known %v), want within 5%% of %.0f/s", learned, known, tt.rate)
			}
		})
	}
}
