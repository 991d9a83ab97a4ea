package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gateKeeper is a Shared that lets one request through each time it is
// told to, and records the limits it was asked for.
type gateKeeper struct {
	mu     sync.Mutex
	asked  [][2]float64 // rate, burst
	open   chan struct{}
	failed error // returned instead of waiting, when set
}

func (k *gateKeeper) Wait(ctx context.Context, rate float64, burst int) error {
	k.mu.Lock()
	k.asked = append(k.asked, [2]float64{rate, float64(burst)})
	err := k.failed
	k.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-k.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestSharedLimiterHoldsRequestsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &gateKeeper{open: make(chan struct{})}
		cfg := fast()
		cfg.Shared = k
		p := newPacer(t, cfg)
		var mu sync.Mutex
		sent := 0
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if _, err := p.Do(t.Context(), func(context.Context) (Answer, error) {
					mu.Lock()
					sent++
					mu.Unlock()
					return Answer{}, nil
				}); err != nil {
					t.Errorf("Do: %v", err)
				}
			})
		}
		count := func() int { mu.Lock(); defer mu.Unlock(); return sent }
		time.Sleep(time.Second)
		synctest.Wait()
		if n := count(); n != 0 {
			t.Fatalf("%d requests sent before the shared limiter let any through", n)
		}
		for want := 1; want <= 3; want++ {
			k.open <- struct{}{}
			synctest.Wait()
			if n := count(); n != want {
				t.Fatalf("after %d grants of the shared limiter, %d requests sent", want, n)
			}
		}
		wg.Wait()
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, a := range k.asked {
			if a[0] != 1000 || a[1] != 1 {
				t.Errorf("shared limiter asked for rate %v burst %v, want the gate's pace 1000, 1 before any answer", a[0], a[1])
			}
		}
	})
}

func TestSharedLimiterCancelGivesTokenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &gateKeeper{open: make(chan struct{})}
		cfg := DefaultConfig()
		cfg.Rate, cfg.Burst = 1, 1
		cfg.Shared = k
		p := newPacer(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		if err := p.waitTurn(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waitTurn = %v, want DeadlineExceeded", err)
		}
		// The token taken from the gate went back: the next request waits
		// on the shared limiter at once, not a second at the gate.
		start := time.Now()
		go func() { k.open <- struct{}{} }()
		if err := p.waitTurn(t.Context()); err != nil {
			t.Fatalf("waitTurn: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("second request waited %v at the gate, want 0", d)
		}
	})
}

func TestSharedLimiterFailureLetsRequestGo(t *testing.T) {
	k := &gateKeeper{failed: errors.New("store down")}
	cfg := fast()
	cfg.Shared = k
	p := newPacer(t, cfg)
	n, err := p.Do(t.Context(), func(context.Context) (Answer, error) { return Answer{}, nil })
	if err != nil || n != 1 {
		t.Fatalf("Do = %d, %v; want 1 attempt, nil", n, err)
	}
	if len(k.asked) != 1 {
		t.Errorf("shared limiter asked %d times, want 1", len(k.asked))
	}
}
