package redisq

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// BenchmarkDrainConsumers drains 2,000 requests from one stream with 2 and
// 4 consumers of one group into one fake tenant's bucket (burst 20, 200
// requests/s, 20 ms latency), one consumer as the baseline. Each consumer
// paces itself on its own, as separate processes do without a shared
// limiter: either for its share of the tenant (ratelimit.Config.Share =
// 1/consumers) or for all of it (Share 1); or, for all of it, also waits on
// one Limiter in the stream's Redis (shared). It reports the makespan over the floor
// ((rows − burst)/rate + latency), the share of requests answered 429, the
// failed rows, the requests left without a result (lost) and those with
// more than one.
func BenchmarkDrainConsumers(b *testing.B) {
	const rows = 2000
	limit := linkertest.RateLimit{Burst: 20, Rate: 200}
	latency := 20 * time.Millisecond
	floor := time.Duration(float64(rows-limit.Burst)/limit.Rate*float64(time.Second)) + latency
	for _, sc := range []struct {
		n             int
		split, shared bool
	}{{1, false, false}, {2, true, false}, {4, true, false}, {2, false, false}, {4, false, false}, {2, false, true}, {4, false, true}} {
		n, share := sc.n, 1.0
		if sc.split {
			share = 1 / float64(n)
		}
		name := fmt.Sprintf("consumers=%d/share=%.2f", n, share)
		if sc.shared {
			name += "/shared"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				addr, c := startRedis(b)
				srv := queuetest.Tenant(b, limit)
				srv.SetFaults(linkertest.Faults{Latency: latency})
				ids := addPairs(b, c, srv, rows)
				var (
					wg      sync.WaitGroup
					mu      sync.Mutex
					sums    []batch.Summary
					paths   []string
					srcs    []*queue.Source
					runners []*batch.Runner
				)
				for i := range n {
					src := source(b, config(b, addr, fmt.Sprintf("c%d", i)), queue.Options{Drain: true})
					srcs = append(srcs, src)
					paths = append(paths, queuetest.ResultsPath(b))
					var shared ratelimit.Shared
					if sc.shared {
						shared = NewLimiter(c, strings.TrimPrefix(srv.URL, "https://"), nil)
					}
					runners = append(runners, benchRunner(b, srv, share, shared))
				}
				b.StartTimer()
				start := time.Now()
				for i := range n {
					sink := queuetest.Sink(b, paths[i])
					wg.Go(func() {
						sum, err := runners[i].RunSource(b.Context(), srcs[i], sink)
						if err != nil {
							b.Errorf("consumer %d: %v", i, err)
						}
						mu.Lock()
						sums = append(sums, sum)
						mu.Unlock()
					})
				}
				wg.Wait()
				makespan := time.Since(start)
				b.StopTimer()

				var requests, limited int64
				failed := 0
				for _, s := range sums {
					requests += s.Requests
					limited += s.RateLimited
					failed += s.Counts[batch.StatusFailed]
				}
				seen := map[string]int{}
				for _, p := range paths {
					for id, rs := range queuetest.Results(b, p) {
						seen[id] += len(rs)
					}
				}
				lost, extra := 0, 0
				for _, id := range ids {
					switch k := seen[id]; {
					case k == 0:
						lost++
					case k > 1:
						extra += k - 1
					}
				}
				b.ReportMetric(makespan.Seconds()/floor.Seconds(), "makespan/floor")
				b.ReportMetric(makespan.Seconds(), "makespan_s")
				b.ReportMetric(float64(limited)/float64(max(requests, 1)), "429/req")
				b.ReportMetric(float64(failed), "failed")
				b.ReportMetric(float64(lost), "lost")
				b.ReportMetric(float64(extra), "extra_results")
				if lost > 0 {
					b.Errorf("%d requests lost", lost)
				}
				b.StartTimer()
			}
		})
	}
}

// benchRunner is a runner with the default pacing, taking share of the
// tenant's limit, waiting on shared too when it is not nil.
func benchRunner(b *testing.B, srv *linkertest.Server, share float64, shared ratelimit.Shared) *batch.Runner {
	b.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(&http.Client{Transport: srv.Client().Transport}))
	if err != nil {
		b.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.Share, pc.Shared = share, shared
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		b.Fatal(err)
	}
	cfg := batch.DefaultConfig()
	return &batch.Runner{Config: cfg, Client: client, Pacer: pacer}
}
