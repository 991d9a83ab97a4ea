package batch

import (
	"fmt"
	"net/http"
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

// startInFlightRows is how many rows a run keeps in flight before the
// tenant's pace is known.
const startInFlightRows = 32
