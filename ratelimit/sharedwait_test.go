package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// memoryShared is a Shared held in memory by the Pacers of one test, as
// a store shared by processes holds it: one token bucket whose rate and
// burst are the latest a caller asked for.
type memoryShared struct {
	mu  sync.Mutex
	lim *rate.Limiter
}

func (s *memoryShared) Wait(ctx context.Context, r float64, burst int) error {
	for {
		s.mu.Lock()
		now := time.Now()
		if s.lim == nil {
			s.lim = rate.NewLimiter(rate.Limit(r), burst)
		}
		s.lim.SetLimitAt(now, rate.Limit(r))
		s.lim.SetBurstAt(now, burst)
		if s.lim.AllowN(now, 1) {
			s.mu.Unlock()
			return nil
		}
		res := s.lim.ReserveN(now, 1)
		d := res.DelayFrom(now)
		res.CancelAt(now)
		s.mu.Unlock()
		if err := sleep(ctx, min(d, maxSharedPoll)); err != nil {
			return err
		}
	}
}

// maxSharedPoll is the longest memoryShared sleeps before it asks again,
// as a store shared by processes is asked again.
const maxSharedPoll = 50 * time.Millisecond

// TestPacersShareALimiter: Pacers that also wait on one shared limiter
// (the consumers of one queue sharing a limit in Redis) still use the
// whole bucket between them: the limit they share is the tenant's refill,
// not what each sees left after the others, and a Pacer left alone with a
// stale, low limit is not held to it. A bucket that refills in a tenth of
// a second is left to the Pacers' own law (the shared limit is not
// applied to it), whose four-Pacer case on it only keeps within bounds.
func TestPacersShareALimiter(t *testing.T) {
	const lat = 50 * time.Millisecond
	tests := []struct {
		sharedProfile
		maxRatio, max429 float64
		slow             bool // left out under the race detector
	}{
		{sharedProfile: sharedProfile{name: "2 on 50/s", rate: 50, size: 50, latency: lat, pacers: 2, rows: 500}, maxRatio: 1.05, max429: 0.01},
		{sharedProfile: sharedProfile{name: "4 on 50/s", rate: 50, size: 50, latency: lat, pacers: 4, rows: 500}, maxRatio: 1.05, max429: 0.01, slow: true},
		{sharedProfile: sharedProfile{name: "2 on enterprise", rate: 16, size: 50, latency: lat, pacers: 2, rows: 200}, maxRatio: 1.05, max429: 0.01},
		{sharedProfile: sharedProfile{name: "4 on enterprise", rate: 16, size: 50, latency: lat, pacers: 4, rows: 300}, maxRatio: 1.05, max429: 0.02},
		{sharedProfile: sharedProfile{name: "4 on 200/s burst 200", rate: 200, size: 200, latency: 20 * time.Millisecond, pacers: 4, rows: 1000}, maxRatio: 1.05, max429: 0.01, slow: true},
		{sharedProfile: sharedProfile{name: "2 on 200/s burst 20", rate: 200, size: 20, latency: 20 * time.Millisecond, pacers: 2, rows: 1000}, maxRatio: 1.45, max429: 0.03},
		{sharedProfile: sharedProfile{name: "4 on 200/s burst 20", rate: 200, size: 20, latency: 20 * time.Millisecond, pacers: 4, rows: 500}, maxRatio: 1.45, max429: 0.12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.slow && raceEnabled {
				t.Skip("takes minutes under the race detector")
			}
			shared := &memoryShared{}
			tt.cfg = func(c *Config) { c.Shared = shared }
			tt.run(t).check(t, tt.maxRatio, tt.max429)
		})
	}
}
