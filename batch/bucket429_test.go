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

// TestRun429OfAnotherBucket: a tenant whose 429 answers show a bucket of
// 50, empty and full again now, while its accepted answers show another.
// Each refusal is waited out by its own call: the 12 rows, each refused
// once, are linked in about a second, not in over a minute.
func TestRun429OfAnotherBucket(t *testing.T) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = srv.Client().Transport

	// The first POST for each primary is refused, quoting the token.
	var (
		mu      sync.Mutex
		refused = map[string]bool{}
		n429    int
	)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			mu.Lock()
			first := !refused[r.URL.Path]
			refused[r.URL.Path] = true
			if first {
				n429++
			}
			mu.Unlock()
			if first {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("x-ratelimit-limit", "50")
				w.Header().Set("x-ratelimit-remaining", "0")
				w.Header().Set("x-ratelimit-reset", strconv.FormatInt(time.Now().Unix(), 10))
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprint(w, `{"statusCode":429,"error":"Too Many Requests","message":"Too many requests"}`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	const rows = 12
	var input strings.Builder
	input.WriteString("primary_user_id,secondary_user_id\n")
	for i := range rows {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		fmt.Fprintf(&input, "%s,%s\n", p, s)
	}
	base, err := linker.ParseDomain(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(front.Client()))
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
	got, sum := runAndCollect(t, &Runner{Config: cfg, Client: client, Pacer: pacer}, input.String())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the run took %v, want a few hundred milliseconds (5s at most)", d)
	}

	if n429 != rows {
		t.Fatalf("the tenant refused %d requests, want %d", n429, rows)
	}
	if sum.RateLimited != rows {
		t.Errorf("the pacer saw %d refusals, want %d", sum.RateLimited, rows)
	}
	for line := 2; line < 2+rows; line++ {
		res, ok := got[line]
		switch {
		case !ok:
			t.Errorf("line %d: no result", line)
		case res.Status != StatusLinked || res.Attempts != 2:
			t.Errorf("line %d: %s after %d attempts (%s), want linked after 2", line, res.Status, res.Attempts, res.Error)
		}
	}
}
