package redisq

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// sendFor runs workers on each pacer, sending no-op requests until window
// has passed, and returns how many each pacer let through.
func sendFor(t *testing.T, pacers []*ratelimit.Pacer, workers int, window time.Duration) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	sent := make([]int64, len(pacers))
	var wg sync.WaitGroup
	for i, p := range pacers {
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					_, err := p.Do(ctx, func(context.Context) (ratelimit.Answer, error) {
						if ctx.Err() == nil {
							atomic.AddInt64(&sent[i], 1)
						}
						return ratelimit.Answer{}, nil
					})
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Do: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return sent
}

// TestSharedLimiterPacesProcessesTogether runs two pacers, each allowed
// rate on its own, as two consumers of one queue would: sharing a limiter
// in one Redis they send no more than rate (plus the burst) together.
func TestSharedLimiterPacesProcessesTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("paces requests for 2s")
	}
	_, c := startRedis(t)
	const (
		rate   = 20.0
		window = 2 * time.Second
	)
	var pacers []*ratelimit.Pacer
	for range 2 {
		cfg := ratelimit.DefaultConfig()
		cfg.Rate, cfg.Burst = rate, 1
		cfg.Shared = NewLimiter(c, "tenant.example.com", nil)
		p, err := ratelimit.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		pacers = append(pacers, p)
	}
	sent := sendFor(t, pacers, 4, window)
	total := sent[0] + sent[1]
	most := int64(rate*window.Seconds()) + 1 + 1 // the burst, and one granted as the window closed
	if total > most {
		t.Errorf("two pacers sharing a limit of %v/s sent %d (%v) in %v, want at most %d", rate, total, sent, window, most)
	}
	if least := int64(rate * window.Seconds() / 2); total < least {
		t.Errorf("two pacers sharing a limit of %v/s sent %d in %v, want at least %d", rate, total, window, least)
	}
	if sent[0] == 0 || sent[1] == 0 {
		t.Errorf("sent %v: each pacer should have had turns", sent)
	}
	t.Logf("sent %v in %v at a shared %v/s", sent, window, rate)
}

func TestLimiterWaitHonoursContext(t *testing.T) {
	_, c := startRedis(t)
	l := NewLimiter(c, "t.example.com", nil)
	if err := l.Wait(t.Context(), 0.5, 1); err != nil { // takes the only token
		t.Fatalf("Wait: %v", err)
	}
	if l.Key() != "rate:linkbatch:rate:t.example.com" {
		t.Errorf("Key = %q", l.Key())
	}
	if n, err := c.Exists(t.Context(), l.Key()).Result(); err != nil || n != 1 {
		t.Errorf("limit %s: exists %d, %v; want it held in Redis", l.Key(), n, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx, 0.5, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Wait returned %v after ctx ended", d)
	}
}

func TestLimiterReportsFailingStoreOnce(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	var reported []error
	l := NewLimiter(c, "t.example.com", func(err error) { reported = append(reported, err) })
	for range 3 {
		if err := l.Wait(t.Context(), 10, 1); err == nil {
			t.Fatal("Wait on an unreachable Redis = nil, want an error")
		}
	}
	if len(reported) != 1 {
		t.Errorf("reported %d failures, want 1: %v", len(reported), reported)
	}
}

func TestOpenLimiterRefusesNATS(t *testing.T) {
	if _, err := OpenLimiter(t.Context(), queue.Config{Kind: queue.NATS}, "t", nil); err == nil {
		t.Error("OpenLimiter of a NATS URL = nil error")
	}
}
