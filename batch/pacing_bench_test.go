package batch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// pacingScenario is one tenant linkbatch is benchmarked against.
type pacingScenario struct {
	name string
	// rows is the input size; shortRows the size in -short mode, 0 to
	// leave the scenario out of it.
	rows, shortRows int
	limit           linkertest.RateLimit
	faults          linkertest.Faults
	// rate and burst, when set, are given to the pacer as --rate and
	// --burst would be; otherwise both are learned from the tenant.
	rate  float64
	burst int
}

// floor returns the shortest possible run of n rows: the tenant's bucket
// is full at the start, so burst requests go at once and the other n-burst
// wait for the refill, and the last answer comes one request latency after
// the last token. The refill left to linkbatch is the tenant's rate less
// what another client takes of it (ExternalLoad), which is how the fake
// tenant models a second client: its bucket refills at
// Rate×(1−ExternalLoad), so the other client's requests never reach the
// server and cannot be counted as linkbatch's. The latency is the mean one,
// Latency plus half the Jitter.
func (s pacingScenario) floor(n int) time.Duration {
	rate := s.limit.Rate * (1 - s.limit.ExternalLoad)
	paced := float64(max(n-s.limit.Burst, 0)) / rate
	return time.Duration(paced*float64(time.Second)) + s.faults.Latency + s.faults.Jitter/2
}

// pacingScenarios are the documented plan profiles, scaled to run in
// seconds, at a short and a long latency, plus a tenant that enforces less
// than --rate asks for, one shared with another client, and one that
// answers 1% of requests with a 5xx.
func pacingScenarios() []pacingScenario {
	fast := linkertest.Faults{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}
	slow := linkertest.Faults{Latency: 250 * time.Millisecond, Jitter: 50 * time.Millisecond}
	profiles := []struct {
		name  string
		rows  int
		limit linkertest.RateLimit
	}{
		// rows = burst + 10 s of refill: long enough that the one round
		// trip spent learning the bucket at the start (see README) is a
		// few percent at most, short enough for the suite to take two
		// minutes.
		{"free", 22, linkertest.RateLimit{Burst: 2, Rate: 2}},
		{"essentials", 53, linkertest.RateLimit{Burst: 20, Rate: 3.3}},
		{"enterprise", 210, linkertest.RateLimit{Burst: 50, Rate: 16}},
		{"private", 1100, linkertest.RateLimit{Burst: 100, Rate: 100}},
	}
	var out []pacingScenario
	for _, p := range profiles {
		for _, lat := range []struct {
			name   string
			faults linkertest.Faults
		}{{"20ms", fast}, {"250ms", slow}} {
			sc := pacingScenario{name: "profile=" + p.name + "/latency=" + lat.name, rows: p.rows, limit: p.limit, faults: lat.faults}
			if p.name == "private" && lat.name == "20ms" {
				sc.shortRows = 200 // 1 s of refill
			}
			out = append(out, sc)
		}
	}
	enterprise := profiles[2].limit
	shared := enterprise
	shared.ExternalLoad = 0.3
	flaky := slow
	flaky.Err5xx = 0.01
	return append(out,
		pacingScenario{name: "profile=enterprise/latency=20ms/limit=below-flags", rows: 210, limit: enterprise, faults: fast, rate: 32, burst: 100},
		pacingScenario{name: "profile=enterprise/latency=20ms/other-client=30pct", rows: 162, shortRows: 60, limit: shared, faults: fast},
		pacingScenario{name: "profile=enterprise/latency=250ms/other-client=30pct", rows: 162, limit: shared, faults: slow},
		pacingScenario{name: "profile=enterprise/latency=250ms/5xx=1pct", rows: 210, limit: enterprise, faults: flaky},
		// Private Cloud's larger tiers, burst half the rate.
		pacingScenario{name: "rate=1000per-s/burst=500/latency=50ms", rows: 20000, limit: linkertest.RateLimit{Burst: 500, Rate: 1000},
			faults: linkertest.Faults{Latency: 50 * time.Millisecond}},
	)
}

// pacingOutcome is what one run of a scenario showed.
type pacingOutcome struct {
	makespan    time.Duration
	requests    int
	rateLimited int
	failed      int
	learned     float64
}

// BenchmarkPacing runs the real pipeline, with the defaults the command
// uses, against a fake tenant over loopback HTTP, and reports how close the
// run comes to the shortest run the tenant's rate limit allows:
// makespan/floor, 429 answers per request, requests per row, rows failed,
// and the refill rate the pacer learned, each averaged over the b.N runs,
// and the worst run's makespan/floor. Run i draws the tenant's faults and
// latencies from seed i+1, so -benchtime 3x averages three different
// draws. Timing is reported, not asserted; a failed row or a missing result
// fails the benchmark. With -short only two small scenarios run. With
// LINKBATCH_BENCH_TABLE set, a Markdown row per scenario is appended to the
// file it names.
func BenchmarkPacing(b *testing.B) {
	var rows []benchTableRow
	for _, sc := range pacingScenarios() {
		n := sc.rows
		if testing.Short() {
			n = sc.shortRows
		}
		if n == 0 {
			continue
		}
		var last *benchTableRow
		b.Run(sc.name, func(b *testing.B) {
			input := pacingInput(n)
			var sum pacingOutcome
			var worst time.Duration
			for i := range b.N {
				b.StopTimer()
				o := runPacing(b, sc, n, input, int64(i)+1)
				b.StartTimer()
				sum.makespan += o.makespan
				worst = max(worst, o.makespan)
				sum.requests += o.requests
				sum.rateLimited += o.rateLimited
				sum.failed += o.failed
				sum.learned += o.learned
			}
			runs := float64(b.N)
			floor := sc.floor(n)
			makespan := sum.makespan / time.Duration(b.N)
			b.ReportMetric(float64(makespan)/float64(floor), "makespan/floor")
			b.ReportMetric(float64(worst)/float64(floor), "worst-makespan/floor")
			b.ReportMetric(float64(sum.rateLimited)/max(float64(sum.requests), 1), "429/req")
			b.ReportMetric(float64(sum.requests)/runs/float64(n), "req/row")
			b.ReportMetric(float64(sum.failed)/runs, "failed")
			b.ReportMetric(sum.learned/runs, "learned-rps")
			last = &benchTableRow{
				scenario: sc.name, rows: n, runs: b.N, floor: floor, makespan: makespan, worst: worst,
				rateLimited: float64(sum.rateLimited) / max(float64(sum.requests), 1),
				reqPerRow:   float64(sum.requests) / runs / float64(n),
				failed:      float64(sum.failed) / runs,
			}
		})
		if last != nil {
			rows = append(rows, *last)
		}
	}
	appendBenchTable(b, rows)
}

// pacingInput returns an input of n conflict-free pairs.
func pacingInput(n int) string {
	var sb strings.Builder
	sb.WriteString("primary_user_id,secondary_user_id\n")
	for i := range n {
		fmt.Fprintf(&sb, "auth0|p%06d,github|%d\n", i, 1000000+i)
	}
	return sb.String()
}

// runPacing runs input (n rows) once against a fresh tenant for sc and
// returns what it measured. The clock runs only around Run.
func runPacing(b *testing.B, sc pacingScenario, n int, input string, seed int64) pacingOutcome {
	b.Helper()
	srv := linkertest.NewServer(linkertest.Config{Seed: seed, RateLimit: sc.limit, Faults: sc.faults})
	defer srv.Close()
	for i := range n {
		srv.Seed(fmt.Sprintf("auth0|p%06d", i), fmt.Sprintf("github|%d", 1000000+i))
	}

	cfg := DefaultConfig()
	// The HTTP client the command builds: one idle connection per worker.
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Workers, IdleConnTimeout: 90 * time.Second}
	defer tr.CloseIdleConnections()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		b.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	if sc.rate > 0 {
		pc.Rate, pc.Burst = sc.rate, sc.burst
	}
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		b.Fatal(err)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input)), nil }
	plan, err := ReadPlan(open)
	if err != nil {
		b.Fatal(err)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	r := &Runner{Config: cfg, Client: client, Pacer: pacer, Log: log, Plan: plan}
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		b.Fatal(err)
	}

	b.StartTimer()
	start := time.Now()
	sum, err := r.Run(context.Background(), open, w)
	makespan := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatalf("Run: %v", err)
	}

	results, linked := 0, 0
	err = ReadResults(&buf, func(res Result) error {
		results++
		if res.Status == StatusLinked {
			linked++
		} else {
			b.Errorf("line %d: %s after %d attempts: %s", res.Line, res.Status, res.Attempts, res.Error)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if results != n {
		b.Errorf("%d results for %d rows", results, n)
	}
	st := srv.Stats()
	if st.LinksApplied != n {
		b.Errorf("the tenant applied %d links for %d rows", st.LinksApplied, n)
	}
	// Only linkbatch sends requests to this tenant, so its counts are
	// linkbatch's; the pacer's own counts must agree.
	requests := st.Posts + st.Gets
	if int64(requests) != sum.Requests || int64(st.RateLimited) != sum.RateLimited {
		b.Errorf("tenant saw %d requests, %d answered 429; the pacer counted %d and %d",
			requests, st.RateLimited, sum.Requests, sum.RateLimited)
	}
	learned, _, _ := pacer.Learned()
	return pacingOutcome{
		makespan:    makespan,
		requests:    requests,
		rateLimited: st.RateLimited,
		failed:      n - linked,
		learned:     learned,
	}
}
