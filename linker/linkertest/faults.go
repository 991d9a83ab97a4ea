package linkertest

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Faults are the faults a Server injects into /api/v2 requests that passed
// the rate limit. Fractions are probabilities in [0, 1], drawn per request.
//
// Precedence for one request: it is first delayed (Latency, Jitter) and
// maybe stalled (Hang); a client that goes away meanwhile gets nothing and
// nothing is applied. Then it may be answered 500, 502 or 503 without being
// handled (Err5xx). A link request may then have its connection closed
// before being handled (DropBefore), or be handled and have its connection
// closed instead of the answer being sent (DropAfter).
type Faults struct {
	Latency time.Duration // added to every request
	Jitter  time.Duration // plus a uniform random delay in [0, Jitter)
	Err5xx  float64       // answered 500/502/503, nothing applied
	// DropBefore and DropAfter apply to POST .../identities only.
	DropBefore float64 // connection closed, nothing applied
	DropAfter  float64 // request handled (the link applied), connection closed
	Hang       float64 // stalled for HangFor before being handled
	HangFor    time.Duration
}

// draw is the fate of one request.
type draw struct {
	delay      time.Duration
	hang       time.Duration
	status5xx  int
	dropBefore bool
	dropAfter  bool
}

// faultSource draws faults from one seeded random source.
type faultSource struct {
	mu  sync.Mutex
	rng *rand.Rand
	f   Faults
}

func newFaultSource(seed int64, f Faults) *faultSource {
	return &faultSource{
		rng: rand.New(rand.NewPCG(uint64(seed), 0x6c696e6b62617463)),
		f:   clampFaults(f),
	}
}

func clampFaults(f Faults) Faults {
	p := func(x float64) float64 { return min(max(x, 0), 1) }
	f.Err5xx, f.DropBefore, f.DropAfter, f.Hang = p(f.Err5xx), p(f.DropBefore), p(f.DropAfter), p(f.Hang)
	f.Latency, f.Jitter, f.HangFor = max(f.Latency, 0), max(f.Jitter, 0), max(f.HangFor, 0)
	return f
}

func (fs *faultSource) set(f Faults) {
	fs.mu.Lock()
	fs.f = clampFaults(f)
	fs.mu.Unlock()
}

var statuses5xx = [...]int{500, 502, 503}

// draw decides the faults of one request. It always consumes the same
// number of values from the source, so the n-th request's fate depends only
// on the seed and the configuration.
func (fs *faultSource) draw(isLink bool) draw {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var u [6]float64
	for i := range u {
		u[i] = fs.rng.Float64()
	}
	f := fs.f
	d := draw{delay: f.Latency + time.Duration(u[0]*float64(f.Jitter))}
	if u[1] < f.Hang {
		d.hang = f.HangFor
	}
	if u[2] < f.Err5xx {
		d.status5xx = statuses5xx[int(u[3]*float64(len(statuses5xx)))%len(statuses5xx)]
		return d
	}
	if isLink {
		d.dropBefore = u[4] < f.DropBefore
		d.dropAfter = !d.dropBefore && u[5] < f.DropAfter
	}
	return d
}

// sleep waits for d; it reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
