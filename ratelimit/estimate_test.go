package ratelimit

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// drain returns the samples a client sees when it sends every 1/send seconds
// for d to a bucket of size tokens refilling at rate, which starts with
// level tokens and from which another client takes a fraction other of the
// refill, evenly. The server clock runs skew ahead of the local one.
func drain(rate, send, other float64, size int, level float64, d, skew time.Duration) []sample {
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var out []sample
	spent := 0.0
	prev := time.Duration(0)
	for at := time.Duration(0); at < d; at += time.Duration(float64(time.Second) / send) {
		level = min(float64(size), level+(at-prev).Seconds()*rate*(1-other))
		prev = at
		if level < 1 {
			continue // would be refused; keep the example simple
		}
		level--
		spent++
		server := t0.Add(at + skew)
		full := server.Add(time.Duration((float64(size) - level) / rate * float64(time.Second)))
		reset := full.Truncate(time.Second)
		if reset.Before(full) {
			reset = reset.Add(time.Second)
		}
		out = append(out, sample{
			at:        t0.Add(at),
			spent:     spent,
			limit:     size,
			remaining: int(math.Floor(level)),
			reset:     reset,
			date:      server.Truncate(time.Second),
		})
	}
	return out
}

func estimate(samples []sample) (*estimator, rateEstimate) {
	e := newEstimator()
	for _, s := range samples {
		e.add(s)
	}
	return e, e.net()
}

func TestEstimatorNet(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		send    float64
		size    int
		level   float64
		d       time.Duration
		want    float64
		unknown bool
	}{
		{name: "enterprise drained at 20/s", rate: 16, send: 20, size: 50, level: 50, d: 10 * time.Second, want: 16},
		{name: "essentials drained at 4/s", rate: 10.0 / 3, send: 4, size: 20, level: 20, d: 20 * time.Second, want: 10.0 / 3},
		{name: "sending slower than the refill", rate: 16, send: 10, size: 100, level: 10, d: 10 * time.Second, want: 16},
		{name: "starting from a full bucket", rate: 5, send: 8, size: 30, level: 30, d: 20 * time.Second, want: 5},
		{name: "one second is not enough", rate: 16, send: 20, size: 50, level: 50, d: time.Second, want: 16, unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			samples := drain(tt.rate, tt.send, 0, tt.size, tt.level, tt.d, 0)
			_, got := estimate(samples)
			if tt.unknown {
				if got.known {
					t.Errorf("net() = %+v from %d samples, want not known yet", got, len(samples))
				}
				return
			}
			if !got.known || math.Abs(got.rate/tt.want-1) > 0.02 {
				t.Errorf("net() = %+v, want known and within 2%% of %.3f", got, tt.want)
			}
		})
	}
}

func TestEstimatorOutOfOrder(t *testing.T) {
	samples := drain(16, 20, 0, 50, 50, 10*time.Second, 0)
	_, inOrder := estimate(samples)

	// Answers overtake each other: shuffle within runs of eight, and let a
	// sample of the full bucket at the start arrive last.
	rnd := rand.New(rand.NewPCG(5, 6))
	shuffled := append([]sample(nil), samples[1:]...)
	for i := 0; i < len(shuffled); i += 8 {
		run := shuffled[i:min(i+8, len(shuffled))]
		rnd.Shuffle(len(run), func(a, b int) { run[a], run[b] = run[b], run[a] })
	}
	shuffled = append(shuffled, samples[0])
	_, got := estimate(shuffled)
	if !got.known || math.Abs(got.rate-inOrder.rate) > 1e-9 {
		t.Errorf("net() out of order = %+v, want %+v as in order", got, inOrder)
	}
	if math.Abs(got.rate/16-1) > 0.02 {
		t.Errorf("net() = %.3f, want within 2%% of 16", got.rate)
	}
}

func TestEstimatorFullBucketEndsSegment(t *testing.T) {
	// Ten seconds of a bucket refilled faster than it is drained (full, so
	// refill is lost), then ten of draining: only the second part shows
	// the rate.
	slow := drain(16, 10, 0, 50, 50, 10*time.Second, 0)
	fast := drain(16, 24, 0, 50, 50, 10*time.Second, 0)
	for i := range fast {
		fast[i].at = fast[i].at.Add(10 * time.Second)
		fast[i].spent += slow[len(slow)-1].spent
	}
	e, got := estimate(append(slow, fast...))
	if !got.known || math.Abs(got.rate/16-1) > 0.02 {
		t.Errorf("net() = %+v, want known and within 2%% of 16", got)
	}
	// A late sample of the full bucket from before the segment does not
	// end it.
	e.add(slow[len(slow)-1])
	if again := e.net(); again != got {
		t.Errorf("net() after a stale full sample = %+v, want %+v", again, got)
	}
}

func TestEstimatorKeepsLastKnownRate(t *testing.T) {
	e, want := estimate(drain(16, 24, 0, 50, 50, 5*time.Second, 0))
	if !want.known {
		t.Fatalf("net() = %+v, want known", want)
	}
	// The bucket fills up again: a new segment, too short to tell.
	last := e.pts[len(e.pts)-1]
	e.add(sample{at: last.at.Add(5 * time.Second), spent: last.spent + 1, limit: 50, remaining: 49})
	if got := e.net(); got != want {
		t.Errorf("net() after the bucket filled = %+v, want the last known %+v", got, want)
	}
}

func TestEstimatorGross(t *testing.T) {
	tests := []struct {
		name      string
		rate      float64
		other     float64
		skew      time.Duration
		wantGross bool
	}{
		{name: "alone, clocks agree", rate: 16},
		{name: "alone, server 47s behind", rate: 16, skew: -47 * time.Second},
		{name: "other client takes 30%", rate: 16, other: 0.3, wantGross: true},
		{name: "other client takes 30%, server 3.3s ahead", rate: 16, other: 0.3, skew: 3300 * time.Millisecond, wantGross: true},
		{name: "essentials, other client takes 30%", rate: 10.0 / 3, other: 0.3, wantGross: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, net := estimate(drain(tt.rate, 1.25*tt.rate, tt.other, 50, 50, 20*time.Second, tt.skew))
			wantNet := tt.rate * (1 - tt.other)
			if !net.known || math.Abs(net.rate/wantNet-1) > 0.03 {
				t.Errorf("net() = %+v, want known and within 3%% of %.3f", net, wantNet)
			}
			g, ok := e.gross()
			if !ok || math.Abs(g/tt.rate-1) > 0.05 {
				t.Errorf("gross() = %.3f, %v; want within 5%% of %.3f", g, ok, tt.rate)
			}
			learned, known := e.learned()
			want := net.rate
			if tt.wantGross {
				want = g
			}
			if !known || learned != want {
				t.Errorf("learned() = %.3f, %v; want %.3f, true", learned, known, want)
			}
		})
	}
}

func TestEstimatorBound(t *testing.T) {
	const rtt = 250 * time.Millisecond
	tests := []struct {
		name              string
		rate, send, other float64
		size              int
		lo                float64 // bound must exceed this
	}{
		// The bucket refills 25 tokens per round trip and holds 5: it is
		// full at every answer, so the fit learns nothing.
		{name: "bucket smaller than a round trip's refill", rate: 100, send: 100, size: 5, lo: 70},
		{name: "bucket kept full by a slow client", rate: 100, send: 40, size: 5, lo: 30},
		{name: "draining bucket", rate: 16, send: 20, size: 50, lo: 10},
		{name: "another client takes 30%", rate: 100, send: 70, other: 0.3, size: 20, lo: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEstimator()
			var got float64
			for _, s := range drain(tt.rate, tt.send, tt.other, tt.size, float64(tt.size), 6*time.Second, 0) {
				s.sent, s.arrived = s.at.Add(-rtt/2), s.at.Add(rtt/2)
				e.add(s)
				b := e.bound()
				if b > tt.rate*(1-tt.other)+1e-9 {
					t.Fatalf("bound() = %.3f after the sample at %v, above the refill left to us, %.3f", b, s.at, tt.rate*(1-tt.other))
				}
				got = b
			}
			if got <= tt.lo {
				t.Errorf("bound() = %.3f at the end, want above %.0f", got, tt.lo)
			}
		})
	}
}

// TestEstimatorCentred: answers 100ms apart from their requests, the
// tenant's Date stamped when it took the token. gross takes each token as
// early as its request was sent and errs low by a round trip over the time
// to reset; centred takes it mid-exchange, erring low by half of that, and
// never high.
func TestEstimatorCentred(t *testing.T) {
	const rtt = 100 * time.Millisecond
	for _, rate := range []float64{16, 50} {
		samples := drain(rate, 1.25*rate/2, 0.5, 50, 50, 20*time.Second, 3300*time.Millisecond)
		for i := range samples {
			samples[i].sent = samples[i].at.Add(-rtt / 2)
			samples[i].arrived = samples[i].at.Add(rtt / 2)
		}
		e, _ := estimate(samples)
		g, gok := e.gross()
		c, cok := e.centred()
		t.Logf("rate %.0f: gross %.3f, centred %.3f", rate, g, c)
		if !gok || !cok {
			t.Fatalf("rate %.0f: gross() ok %v, centred() ok %v; want both", rate, gok, cok)
		}
		if c > rate*1.005 || c < g || math.Abs(c/rate-1) > math.Abs(g/rate-1)/1.5 {
			t.Errorf("rate %.0f: centred() = %.3f, gross() = %.3f; want centred no higher than the rate, and nearer to it than gross by half at least", rate, c, g)
		}
	}
}
