package ratelimit

import (
	"math"
	"testing"
	"time"
)

// The bucket model reads no clock: it is driven here with made-up times,
// without synctest.
func TestBucketFirstAnswerSetsBurstAndLevel(t *testing.T) {
	m := newBucket(DefaultConfig())
	if r, b := m.pace(); r != startRate || b != 1 {
		t.Fatalf("pace before any answer = %v, %d; want %v, 1", r, b, float64(startRate))
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g := m.let(t0, false)
	now := t0.Add(100 * time.Millisecond)
	g = m.settle(now, g)
	level := m.learn(now, g, Answer{Arrived: true, Limit: 50, Remaining: 49, Date: now}, 0)
	if _, b := m.pace(); b != 50 {
		t.Errorf("burst after an answer showing a bucket of 50 = %d, want 50", b)
	}
	// The tenant had 49 tokens midway through the round trip, plus the
	// refill of 50ms at the slow pace.
	// It claims fracStart of them, not knowing yet whether other clients
	// draw on the bucket, and one more token probeAfter later: the
	// probe that shows whether others claimed the same tokens.
	if want := math.Floor(fracStart*49+startRate*0.05) + 1 - startRate*probeAfter.Seconds(); math.Abs(level-want) > 1e-9 {
		t.Errorf("level = %v, want %v", level, want)
	}
	if rate, size, known := m.learned(); size != 50 || known {
		t.Errorf("learned = %v, %d, %t; want size 50, rate not known yet", rate, size, known)
	}
}

func TestBucketRefusalSlowsThePace(t *testing.T) {
	cfg := DefaultConfig()
	m := newBucket(cfg)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g := m.settle(t0, m.let(t0, false))
	m.learn(t0, g, Answer{Arrived: true, Limit: 10, Remaining: 9}, 0)
	before := m.mirrorRate
	g = m.settle(t0, m.let(t0, false))
	m.refuse(g.seq)
	m.learn(t0, g, Answer{Arrived: true, Limit: 10, Remaining: 0, RateLimited: true}, 0)
	m.rebuff(t0, false)
	if m.margin != marginStep || m.frac != fracStart*fracCut || m.mirrorRate > before {
		t.Errorf("after a refusal margin %v, frac %v, rate %v (was %v); want margin %v, frac %v, no faster rate",
			m.margin, m.frac, m.mirrorRate, before, float64(marginStep), fracStart*fracCut)
	}
	if d, known := m.tokenTime(); known || d != 0 {
		t.Errorf("tokenTime = %v, %t; want unknown before the rate is learned", d, known)
	}
}

func TestTokenWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		a    Answer
		want time.Duration
	}{
		{"no answer", Answer{}, 0},
		{"no reset", Answer{Arrived: true, Limit: 10}, 0},
		{"bucket full", Answer{Arrived: true, Limit: 10, Remaining: 10, Reset: now.Add(time.Second)}, 0},
		{"10 missing in 5s", Answer{Arrived: true, Limit: 10, Reset: now.Add(5 * time.Second)}, 500 * time.Millisecond},
		{"from the tenant's date", Answer{Arrived: true, Limit: 10, Remaining: 5, Date: now.Add(-47 * time.Second), Reset: now.Add(-42 * time.Second)}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenWait(now, tt.a); got != tt.want {
				t.Errorf("tokenWait = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBucketProbeAfterFirstClaim: alone on a bucket of 100 with answers a
// quarter of a second away, the Pacer claims a quarter of it, then the
// answers to that claim come back: they tell of the bucket before any
// other client's requests of the same round trip could show, so they
// claim nothing more. The answer to the probe sent probeAfter after the
// claim does show them: with none there, it claims a quarter of what it
// shows, stale answers of the same round trip notwithstanding (they held
// a lone Pacer's bucket full for another round trip).
func TestBucketProbeAfterFirstClaim(t *testing.T) {
	m := newBucket(DefaultConfig())
	const rtt = 250 * time.Millisecond
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first := m.let(t0, false)
	t1 := t0.Add(rtt)
	level := m.learn(t1, m.settle(t1, first), Answer{Arrived: true, Limit: 100, Remaining: 99, Date: t1}, 0)
	claim := int(level)
	if claim < 20 {
		t.Fatalf("first claim = %d tokens, want about a quarter of 99", claim)
	}
	var grants []grant
	for range claim {
		grants = append(grants, m.let(t1, false))
	}
	probe := m.let(t1.Add(probeAfter), true)
	// The claim's answers: the tenant handled them at t1 + rtt/2 and
	// refilled 100/s meanwhile.
	t2 := t1.Add(rtt)
	for i, g := range grants {
		rem := 99 - i - 1 + 12
		level = m.learn(t2, m.settle(t2, g), Answer{Arrived: true, Limit: 100, Remaining: rem, Date: t2}, 0)
		if level >= 2 {
			t.Fatalf("answer %d of the claim (remaining %d) raised the level to %.1f, want at most one token more", i+1, rem, level)
		}
	}
	t3 := t2.Add(probeAfter)
	level = m.learn(t3, m.settle(t3, probe), Answer{Arrived: true, Limit: 100, Remaining: 90, Date: t3}, 0)
	if want := fracStart * 90; level < want-1 {
		t.Errorf("level after the probe's answer (remaining 90) = %.1f, want about %.1f (a quarter of it)", level, want)
	}
}
