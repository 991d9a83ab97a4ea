// Package queuetest holds what the tests of the queue brokers share: a
// fake tenant with a runner paced for it, a results file, a probe of the
// requests sent at the same time for one pair, and the scenarios every
// broker must pass (RunScenarios), each broker's package supplying its
// real server through the Broker interface.
package queuetest

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// Tenant starts a fake tenant, closed at the end of the test.
func Tenant(t testing.TB, rl linkertest.RateLimit) *linkertest.Server {
	t.Helper()
	srv := linkertest.NewServer(linkertest.Config{RateLimit: rl})
	t.Cleanup(srv.Close)
	return srv
}

// Runner returns a runner of workers workers linking on srv through rt
// (nil: srv's own transport), with few, quick retries.
func Runner(t testing.TB, srv *linkertest.Server, workers int, rt http.RoundTripper) *batch.Runner {
	t.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if rt == nil {
		rt = srv.Client().Transport
	}
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		t.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.MaxRetries, pc.MinBackoff, pc.MaxBackoff = 1, time.Millisecond, 5*time.Millisecond
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	cfg := batch.DefaultConfig()
	cfg.Workers = workers
	cfg.Grace = 0
	return &batch.Runner{Config: cfg, Client: client, Pacer: pacer}
}

// Link links secondary into primary on srv, as an earlier run would have.
func Link(t testing.TB, srv *linkertest.Server, primary, secondary string) {
	t.Helper()
	r := Runner(t, srv, 1, nil)
	row := batch.Row{Primary: primary, Secondary: secondary}.Check()
	req, err := row.Request()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Client.Link(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

// ResultsPath returns a results file path in a temporary directory.
func ResultsPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "results.csv")
}

// Sink opens the results file at path for appending.
func Sink(t testing.TB, path string) *queue.FileSink {
	t.Helper()
	s, err := queue.OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Results reads the results file at path, by message id.
func Results(t testing.TB, path string) map[string][]batch.Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]batch.Result{}
	if err := batch.ReadResults(f, func(r batch.Result) error {
		got[r.MessageID] = append(got[r.MessageID], r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// Probe is an http.RoundTripper that records, per link request path (one
// primary), the most requests in flight at once.
type Probe struct {
	Next http.RoundTripper

	mu      sync.Mutex
	now     map[string]int
	Highest map[string]int
}

// RoundTrip implements http.RoundTripper.
func (p *Probe) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return p.Next.RoundTrip(req)
	}
	k := req.URL.EscapedPath()
	p.mu.Lock()
	if p.now == nil {
		p.now, p.Highest = map[string]int{}, map[string]int{}
	}
	p.now[k]++
	p.Highest[k] = max(p.Highest[k], p.now[k])
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.now[k]--
		p.mu.Unlock()
	}()
	return p.Next.RoundTrip(req)
}

// Max returns the most link requests for one primary in flight at once.
func (p *Probe) Max() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.Highest {
		n = max(n, v)
	}
	return n
}

// FailFor is an http.RoundTripper that answers 503 itself to every request
// whose path holds the escaped user id, and passes the others on.
type FailFor struct {
	Next http.RoundTripper
	ID   string
}

// RoundTrip implements http.RoundTripper.
func (f FailFor) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.EscapedPath(), url.PathEscape(f.ID)) {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
	}
	return f.Next.RoundTrip(req)
}
