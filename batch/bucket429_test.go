package batch

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// refusedRun is a run of 12 pairs through a proxy in front of the fake
// tenant that refuses the first POST for each primary with refuse (given
// the request's bearer token) and passes everything else on.
type refusedRun struct {
	rows    int
	results map[int]Result
	sum     Summary
	n429    int
	took    time.Duration
	token   string
}

func runRefusedOnce(t *testing.T, refuse func(w http.ResponseWriter, tok string)) refusedRun {
	t.Helper()
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = srv.Client().Transport

	run := refusedRun{rows: 12, token: srv.IssueToken(time.Hour)}
	var (
		mu      sync.Mutex
		refused = map[string]bool{}
	)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			mu.Lock()
			first := !refused[r.URL.Path]
			refused[r.URL.Path] = true
			if first {
				run.n429++
			}
			mu.Unlock()
			if first {
				refuse(w, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	var input strings.Builder
	input.WriteString("primary_user_id,secondary_user_id\n")
	for i := range run.rows {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		fmt.Fprintf(&input, "%s,%s\n", p, s)
	}
	base, err := linker.ParseDomain(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(run.token), linker.WithHTTPClient(front.Client()))
	if err != nil {
		t.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.Rate, pc.Burst = 200, 10
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Workers = 4
	start := time.Now()
	run.results, run.sum = runAndCollect(t, &Runner{Config: cfg, Client: client, Pacer: pacer}, input.String())
	run.took = time.Since(start)

	mu.Lock()
	defer mu.Unlock()
	if run.n429 != run.rows {
		t.Fatalf("the tenant refused %d requests, want %d", run.n429, run.rows)
	}
	if run.sum.RateLimited != int64(run.rows) {
		t.Errorf("the pacer saw %d refusals, want %d", run.sum.RateLimited, run.rows)
	}
	for line := 2; line < 2+run.rows; line++ {
		res, ok := run.results[line]
		switch {
		case !ok:
			t.Errorf("line %d: no result", line)
		case res.Status != StatusLinked || res.Attempts != 2:
			t.Errorf("line %d: %s after %d attempts (%s), want linked after 2", line, res.Status, res.Attempts, res.Error)
		}
	}
	return run
}

// TestRun429OfAnotherBucket: a tenant whose 429 answers show a bucket of
// 50, empty and full again now, while its accepted answers show another.
// Each refusal is waited out by its own call: the 12 rows, each refused
// once, are linked in about a second, not in over a minute.
func TestRun429OfAnotherBucket(t *testing.T) {
	run := runRefusedOnce(t, func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-ratelimit-limit", "50")
		w.Header().Set("x-ratelimit-remaining", "0")
		w.Header().Set("x-ratelimit-reset", strconv.FormatInt(time.Now().Unix(), 10))
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"statusCode":429,"error":"Too Many Requests","message":"Too many requests"}`)
	})
	if run.took > 5*time.Second {
		t.Errorf("the run took %v, want a few hundred milliseconds (5s at most)", run.took)
	}
}

// TestRunRetries429ThatEchoesTheToken: a tenant whose 429 answers quote the
// bearer token. Masking the token must leave the answer a rate-limit
// refusal, which the pacer waits out and retries: every row is linked, and
// the token appears in no result.
func TestRunRetries429ThatEchoesTheToken(t *testing.T) {
	run := runRefusedOnce(t, func(w http.ResponseWriter, tok string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"statusCode":429,"error":"Too Many Requests","message":"Too many requests for %s"}`, tok)
	})
	for line, res := range run.results {
		if strings.Contains(res.Error, run.token[:16]) {
			t.Errorf("line %d: the result's error holds the token: %q", line, res.Error)
		}
	}
}
