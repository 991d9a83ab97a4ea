package batch

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// processScenario is K linkbatch processes, each the built binary with its
// own part of the input and its own results file, on one fake tenant.
type processScenario struct {
	name string
	// rows is the input size, split evenly between the processes;
	// shortRows the size in -short mode, 0 to leave the scenario out.
	rows, shortRows int
	procs           int
	limit           linkertest.RateLimit
	global          linkertest.RateLimit // a limit no header announces
	share           string               // --share, empty for the default
}

// floor is the shortest possible run of n rows on the tenant: the tightest
// bucket's burst at once, its refill for the rest, one latency at the end.
func (s processScenario) floor(n int, latency time.Duration) time.Duration {
	rate, burst := s.limit.Rate, s.limit.Burst
	if s.global.Rate > 0 {
		rate, burst = min(rate, s.global.Rate), min(burst, s.global.Burst)
	}
	return time.Duration(float64(max(n-burst, 0))/rate*float64(time.Second)) + latency
}

// processScenarios: an enterprise-like (16/s, burst 50) and a private-like
// (50/s, burst 50) bucket with 2 and 4 processes, with and without --share
// 1/K; a hidden global limit (2/s, burst 10) under an announced bucket of
// 50 at 10/s; and one process at 1,000/s and 2,000/s with a burst of half
// the rate.
func processScenarios() []processScenario {
	enterprise := linkertest.RateLimit{Burst: 50, Rate: 16}
	private := linkertest.RateLimit{Burst: 50, Rate: 50}
	var out []processScenario
	for _, k := range []int{2, 4} {
		for _, sh := range []bool{false, true} {
			share, suffix := "", ""
			if sh {
				share, suffix = fmt.Sprintf("%g", 1/float64(k)), fmt.Sprintf("/share=1-%d", k)
			}
			short := 0
			if !sh {
				short = 300 // 6 s of refill at 50/s
			}
			out = append(out,
				processScenario{name: fmt.Sprintf("procs=%d/profile=enterprise%s", k, suffix), rows: 370, procs: k, limit: enterprise, share: share},
				processScenario{name: fmt.Sprintf("procs=%d/profile=private%s", k, suffix), rows: 2000, shortRows: short, procs: k, limit: private, share: share},
			)
		}
	}
	return append(out,
		processScenario{name: "procs=1/hidden-limit=2per-s-burst-10/announced=50at10per-s", rows: 150, procs: 1,
			limit: linkertest.RateLimit{Burst: 50, Rate: 10}, global: linkertest.RateLimit{Burst: 10, Rate: 2}},
		processScenario{name: "procs=1/rate=1000per-s/burst=500", rows: 20000, shortRows: 3000, procs: 1, limit: linkertest.RateLimit{Burst: 500, Rate: 1000}},
		processScenario{name: "procs=1/rate=2000per-s/burst=1000", rows: 40000, procs: 1, limit: linkertest.RateLimit{Burst: 1000, Rate: 2000}},
	)
}

// processLatency is the fake tenant's latency in these scenarios.
const processLatency = 50 * time.Millisecond

// BenchmarkPacingProcesses runs the built linkbatch binary, with default
// flags (and --share when the scenario says), as K separate processes on
// one fake tenant over loopback HTTP, and reports makespan/floor for all
// rows, 429 answers per request, rows failed, the spread of the processes'
// finish times (first to last, over the last), and the CPU seconds the
// linkbatch processes used per 1,000 rows. Timing is reported, not
// asserted; a missing result fails the benchmark. With -short only the
// private-like scenarios without --share and 1,000/s run, smaller. With
// LINKBATCH_BENCH_TABLE set, a Markdown row per scenario is appended to the
// file it names.
func BenchmarkPacingProcesses(b *testing.B) {
	bin := buildLinkbatch(b)
	var rows []benchTableRow
	for _, sc := range processScenarios() {
		n := sc.rows
		if testing.Short() {
			n = sc.shortRows
		}
		if n == 0 {
			continue
		}
		var last *benchTableRow
		b.Run(sc.name, func(b *testing.B) {
			var sum processOutcome
			var worst time.Duration
			for i := range b.N {
				b.StopTimer()
				o := runProcesses(b, bin, sc, n, int64(i)+1)
				b.StartTimer()
				sum.makespan += o.makespan
				worst = max(worst, o.makespan)
				sum.requests += o.requests
				sum.rateLimited += o.rateLimited
				sum.failed += o.failed
				sum.spread += o.spread
				sum.cpu += o.cpu
			}
			runs := float64(b.N)
			floor := sc.floor(n, processLatency)
			makespan := sum.makespan / time.Duration(b.N)
			b.ReportMetric(float64(makespan)/float64(floor), "makespan/floor")
			b.ReportMetric(float64(worst)/float64(floor), "worst-makespan/floor")
			b.ReportMetric(float64(sum.rateLimited)/max(float64(sum.requests), 1), "429/req")
			b.ReportMetric(float64(sum.failed)/runs, "failed")
			b.ReportMetric(sum.spread/runs, "finish-spread")
			b.ReportMetric(sum.cpu.Seconds()/runs/float64(n)*1000, "cpu-s/1000rows")
			last = &benchTableRow{
				scenario: sc.name, rows: n, runs: b.N, floor: floor, makespan: makespan, worst: worst,
				rateLimited: float64(sum.rateLimited) / max(float64(sum.requests), 1),
				reqPerRow:   float64(sum.requests) / runs / float64(n),
				failed:      float64(sum.failed) / runs,
				spread:      sum.spread / runs,
				cpuPer1000:  sum.cpu.Seconds() / runs / float64(n) * 1000,
				processes:   true,
			}
		})
		if last != nil {
			rows = append(rows, *last)
		}
	}
	appendBenchTable(b, rows)
}

// processOutcome is what one run of a processScenario showed.
type processOutcome struct {
	makespan    time.Duration
	requests    int
	rateLimited int
	failed      int
	spread      float64
	cpu         time.Duration // user and system time of the linkbatch processes
}

// benchBinEnv names a linkbatch binary for BenchmarkPacingProcesses to run
// instead of building one (to measure another version).
const benchBinEnv = "LINKBATCH_BENCH_BIN"

// buildLinkbatch builds the command into a temporary directory, or returns
// the binary LINKBATCH_BENCH_BIN names.
func buildLinkbatch(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv(benchBinEnv); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "linkbatch")
	build := exec.Command("go", "build", "-o", bin, "../cmd/linkbatch")
	var stderr bytes.Buffer
	build.Stderr = &stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build linkbatch: %v\n%s", err, stderr.String())
	}
	return bin
}

// runProcesses runs sc once with n rows against a fresh tenant and returns
// what it measured.
func runProcesses(b *testing.B, bin string, sc processScenario, n int, seed int64) processOutcome {
	b.Helper()
	srv := linkertest.NewServer(linkertest.Config{Seed: seed, RateLimit: sc.limit, GlobalLimit: sc.global,
		Faults: linkertest.Faults{Latency: processLatency}})
	defer srv.Close()
	dir := b.TempDir()
	per := (n + sc.procs - 1) / sc.procs
	type proc struct {
		cmd    *exec.Cmd
		out    string
		stderr bytes.Buffer
		rows   int
		done   time.Duration
	}
	procs := make([]*proc, sc.procs)
	for k := range sc.procs {
		var in strings.Builder
		in.WriteString("primary_user_id,secondary_user_id\n")
		p := &proc{out: filepath.Join(dir, fmt.Sprintf("out%d.csv", k))}
		for i := k * per; i < min(n, (k+1)*per); i++ {
			primary, secondary := fmt.Sprintf("auth0|p%06d", i), fmt.Sprintf("github|%d", 1000000+i)
			srv.Seed(primary, secondary)
			fmt.Fprintf(&in, "%s,%s\n", primary, secondary)
			p.rows++
		}
		inPath := filepath.Join(dir, fmt.Sprintf("in%d.csv", k))
		if err := os.WriteFile(inPath, []byte(in.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		args := []string{"run", "--in", inPath, "--out", p.out, "--no-progress", "--log-level", "error"}
		if sc.share != "" {
			args = append(args, "--share", sc.share)
		}
		// The children end with the benchmark: killed at its end, when
		// it fails early, and when it is killed itself (dieWithParent).
		p.cmd = exec.CommandContext(b.Context(), bin, args...)
		dieWithParent(p.cmd)
		p.cmd.Env = []string{"HOME=" + dir, "AUTH0_DOMAIN=" + srv.URL, "AUTH0_TOKEN=" + srv.IssueToken(time.Hour)}
		p.cmd.Stderr = &p.stderr
		procs[k] = p
	}
	b.StartTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for k, p := range procs {
		if err := p.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			errs[k] = p.cmd.Wait()
			p.done = time.Since(start)
		})
	}
	wg.Wait()
	b.StopTimer()

	var o processOutcome
	first := procs[0].done
	for k, p := range procs {
		if errs[k] != nil {
			b.Errorf("process %d: %v\n%s", k, errs[k], p.stderr.String())
		}
		o.makespan = max(o.makespan, p.done)
		first = min(first, p.done)
		o.cpu += p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
		f, err := os.Open(p.out)
		if err != nil {
			b.Fatal(err)
		}
		results := 0
		err = ReadResults(f, func(res Result) error {
			results++
			if res.Status != StatusLinked {
				o.failed++
			}
			return nil
		})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if results != p.rows {
			b.Errorf("process %d: %d results for %d rows", k, results, p.rows)
		}
	}
	o.spread = float64(o.makespan-first) / float64(o.makespan)
	st := srv.Stats()
	o.requests, o.rateLimited = st.Posts+st.Gets, st.RateLimited
	if st.LinksApplied != n {
		b.Errorf("the tenant applied %d links for %d rows", st.LinksApplied, n)
	}
	return o
}
