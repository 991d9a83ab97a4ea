package batch

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// TestRunKeepsThePaceInFlight: against a tenant of 1,000 requests/s and
// 50ms of latency, the default run keeps more than the 32 rows in flight
// that a fixed pool had, and every row is linked.
func TestRunKeepsThePaceInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("links 2,000 rows over loopback HTTP")
	}
	const n = 2000
	srv := linkertest.NewServer(linkertest.Config{
		RateLimit: linkertest.RateLimit{Burst: 500, Rate: 1000},
		Faults:    linkertest.Faults{Latency: 50 * time.Millisecond},
	})
	t.Cleanup(srv.Close)
	input, client, pacer := pacedSetup(t, srv, n)
	var active, most atomic.Int64
	r := &Runner{Config: DefaultConfig(), Client: client, Pacer: pacer, Hooks: Hooks{Active: func(d int) {
		if v := active.Add(int64(d)); v > most.Load() {
			most.Store(v)
		}
	}}}
	got, _ := runAndCollect(t, r, input)
	linked := 0
	for _, res := range got {
		if res.Status == StatusLinked {
			linked++
		}
	}
	if linked != n {
		t.Errorf("%d of %d rows linked", linked, n)
	}
	rate, size, known := pacer.Learned()
	t.Logf("learned %.1f/s, bucket %d, known %v; in flight now %d", rate, size, known, pacer.InFlight(2000))
	if m := most.Load(); m <= startInFlightRows {
		t.Errorf("at most %d rows in flight, want more than %d", m, startInFlightRows)
	}
}

// pacedSetup seeds srv with the n pairs of pacingInput(n) and returns that
// input, a client of srv with room for 2,000 connections, and a pacer
// with the default settings.
func pacedSetup(t *testing.T, srv *linkertest.Server, n int) (string, *linker.Client, *ratelimit.Pacer) {
	t.Helper()
	input := pacingInput(n)
	for i := range n {
		srv.Seed(fmt.Sprintf("auth0|p%06d", i), fmt.Sprintf("github|%d", 1000000+i))
	}
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 2000}
	t.Cleanup(tr.CloseIdleConnections)
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	pacer, err := ratelimit.New(ratelimit.DefaultConfig(), linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	return input, client, pacer
}

// startInFlightRows is how many rows a run keeps in flight before the
// tenant's pace is known.
const startInFlightRows = 32

// TestRunAdmitsRowsByThePace: the workers started to spend the tenant's
// burst at once outlast it, but once it is spent the run keeps only as
// many rows in flight as the pace asks for, not one for every worker,
// which would all wait at the pacer's gate.
func TestRunAdmitsRowsByThePace(t *testing.T) {
	if testing.Short() {
		t.Skip("links 3,000 rows over loopback HTTP")
	}
	// A bucket of 1,000 refilled at 500/s: the burst is spent within
	// the first second or so, the rest at 500/s for 4s; from 2.5s to
	// 3.5s, the bucket is kept near empty.
	const n, from, to = 3000, 2500 * time.Millisecond, 3500 * time.Millisecond
	srv := linkertest.NewServer(linkertest.Config{
		RateLimit: linkertest.RateLimit{Burst: 1000, Rate: 500},
		Faults:    linkertest.Faults{Latency: 50 * time.Millisecond},
	})
	t.Cleanup(srv.Close)
	input, client, pacer := pacedSetup(t, srv, n)
	var (
		mu             sync.Mutex
		active, peak   int
		late, lateWant int // the most rows in flight from from to to, and the most InFlight asked for then
		linked         int
	)
	start := time.Now()
	r := &Runner{Config: DefaultConfig(), Client: client, Pacer: pacer, Hooks: Hooks{
		Active: func(d int) {
			want := pacer.InFlight(2000)
			mu.Lock()
			defer mu.Unlock()
			active += d
			peak = max(peak, active)
			if d := time.Since(start); d > from && d < to {
				late, lateWant = max(late, active), max(lateWant, want)
			}
		},
		Result: func(res Result) {
			mu.Lock()
			defer mu.Unlock()
			if res.Status == StatusLinked {
				linked++
			}
		},
	}}
	runAndCollect(t, r, input)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("rows in flight: at most %d; from %v to %v at most %d, InFlight at most %d; run took %v", peak, from, to, late, lateWant, time.Since(start))
	if linked != n {
		t.Errorf("%d of %d rows linked", linked, n)
	}
	if peak <= lateWant {
		// Too slow a machine (the race detector under load) spends the
		// burst so slowly that no worker is left over.
		t.Skipf("the burst's %d rows in flight are no more than the %d the pace asks for after it: nothing to tell", peak, lateWant)
	}
	if late > lateWant {
		t.Errorf("%d rows in flight from %v to %v, while the pacer asked for at most %d", late, from, to, lateWant)
	}
}
