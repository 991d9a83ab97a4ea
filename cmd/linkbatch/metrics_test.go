package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// startMetrics serves h on a free loopback port and returns its /metrics
// URL; the server is stopped when the test ends.
func startMetrics(t *testing.T, ctx context.Context, h http.Handler) (url string, stop func() error) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	stop, err := serveMetrics(ctx, "127.0.0.1:0", h, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })
	served := logs.FilterMessage("serving metrics").All()
	if len(served) != 1 {
		t.Fatalf("want one 'serving metrics' line, got %v", logs.All())
	}
	return "http://" + served[0].ContextMap()["addr"].(string) + "/metrics", stop
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

func TestMetricsEndpoint(t *testing.T) {
	pacer, err := ratelimit.New(ratelimit.Config{Rate: 7, Burst: 3, Share: 1, MaxRetries: 2, MaxRateLimited: 1,
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxHold: time.Second}, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	// One call that needs a retry after a 503: the pacer counts it.
	calls := 0
	_, err = pacer.Do(t.Context(), func(context.Context) (ratelimit.Answer, error) {
		if calls++; calls == 1 {
			return ratelimit.Answer{Arrived: true}, &linker.APIError{Status: 503, Title: "Service Unavailable"}
		}
		return ratelimit.Answer{Arrived: true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	m := newMetrics(pacer)
	url, _ := startMetrics(t, t.Context(), m.Handler())
	h := m.Hooks()
	for _, st := range []batch.Status{batch.StatusLinked, batch.StatusLinked, batch.StatusFailed, batch.StatusLinked} {
		h.Result(batch.Result{Status: st})
	}
	for _, a := range []struct {
		kind   string
		status int
		d      time.Duration
	}{
		{"link", 201, 30 * time.Millisecond},
		{"link", 429, 10 * time.Millisecond},
		{"link", 201, 40 * time.Millisecond},
		{"link", 0, 2 * time.Second},
		{"get_user", 200, 20 * time.Millisecond},
	} {
		h.Attempt(attemptOf(a.kind, a.status, a.d))
	}
	h.Active(1)
	h.Active(1)
	h.Active(1)
	h.Active(-1)

	body := scrape(t, url)
	tests := []struct {
		name string
		line string
	}{
		{"linked rows", `linkbatch_rows_total{status="linked"} 3`},
		{"failed rows", `linkbatch_rows_total{status="failed"} 1`},
		{"statuses start at 0", `linkbatch_rows_total{status="planned"} 0`},
		{"links created", `linkbatch_requests_total{code="201",kind="link"} 2`},
		{"no answer", `linkbatch_requests_total{code="0",kind="link"} 1`},
		{"reads", `linkbatch_requests_total{code="200",kind="get_user"} 1`},
		{"429s", `linkbatch_rate_limited_total 1`},
		{"retries from the pacer", `linkbatch_retries_total 1`},
		{"pace", `linkbatch_pace_requests_per_second 7`},
		{"learned limit not yet", `linkbatch_learned_limit_requests_per_second 0`},
		{"learned burst not yet", `linkbatch_learned_limit_burst 0`},
		{"in flight", `linkbatch_in_flight 2`},
		{"latency count", `linkbatch_request_duration_seconds_count{kind="link"} 4`},
		{"latency bucket", `linkbatch_request_duration_seconds_bucket{kind="link",le="0.05"} 3`},
		{"latency sum", `linkbatch_request_duration_seconds_sum{kind="get_user"} 0.02`},
		{"runtime", `go_goroutines `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !hasLine(body, tt.line) {
				t.Errorf("/metrics lacks %q", tt.line)
			}
		})
	}
}

// hasLine reports whether body has a line that starts with prefix.
func hasLine(body, prefix string) bool {
	for l := range strings.Lines(body) {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestMetricsDryRun(t *testing.T) {
	m := newMetrics(nil)
	url, stop := startMetrics(t, t.Context(), m.Handler())
	body := scrape(t, url)
	for _, line := range []string{"linkbatch_retries_total 0", "linkbatch_pace_requests_per_second 0", "linkbatch_in_flight 0"} {
		if !hasLine(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the server still answers after stop")
	}
}

func TestMetricsServerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	url, stop := startMetrics(t, ctx, newMetrics(nil).Handler())
	cancel()
	if err := stop(); err != nil { // waits for the shutdown ctx started
		t.Fatalf("stop: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the server still answers after its context ended")
	}
}

func TestMetricsOnlyMetricsPath(t *testing.T) {
	url, _ := startMetrics(t, t.Context(), newMetrics(nil).Handler())
	resp, err := http.Get(strings.TrimSuffix(url, "/metrics") + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/: %d, want 404", resp.StatusCode)
	}
}

func TestMetricsPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	core, logs := observer.New(zapcore.DebugLevel)
	stop, err := serveMetrics(t.Context(), ln.Addr().String(), newMetrics(nil).Handler(), zap.New(core))
	if err == nil {
		_ = stop()
		t.Fatal("serveMetrics on a taken port: no error")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not match EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("error %q does not name the address", err)
	}
	if logs.Len() != 0 {
		t.Errorf("the error was logged too: %v", logs.All())
	}
}

func TestHooksCombine(t *testing.T) {
	var got []string
	rec := func(name string) batch.Hooks {
		return batch.Hooks{
			Plan:   func(rows, todo int) { got = append(got, name+" plan") },
			Result: func(batch.Result) { got = append(got, name+" result") },
		}
	}
	tests := []struct {
		name       string
		hooks      []batch.Hooks
		want       []string
		nilAttempt bool
	}{
		{"none", nil, nil, true},
		{"empty hooks stay nil", []batch.Hooks{{}, {}}, nil, true},
		{"in order", []batch.Hooks{rec("a"), {}, rec("b")}, []string{"a plan", "b plan", "a result", "b result"}, true},
		{"attempts", []batch.Hooks{{Attempt: func(a batch.Attempt) { got = append(got, a.Kind) }}}, []string{"link"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			c := combineHooks(tt.hooks...)
			if (c.Attempt == nil) != tt.nilAttempt || c.Active != nil {
				t.Fatalf("Attempt nil = %v, want %v; Active nil = %v, want true", c.Attempt == nil, tt.nilAttempt, c.Active == nil)
			}
			if c.Plan != nil {
				c.Plan(2, 2)
			}
			if c.Result != nil {
				c.Result(batch.Result{})
			}
			if c.Attempt != nil {
				c.Attempt(attemptOf("link", 201, time.Millisecond))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("calls %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHooksProgressAndMetricsTogether(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clock := newFakeClock()
	p := newProgress(progressOptions{Log: zap.New(core), Now: clock.Now})
	m := newMetrics(nil)
	h := combineHooks(p.Hooks(), m.Hooks())
	h.Plan(2, 2)
	h.Active(1)
	h.Attempt(attemptOf("link", 429, time.Millisecond))
	h.Attempt(attemptOf("link", 201, time.Millisecond))
	h.Active(-1)
	h.Result(batch.Result{Status: batch.StatusLinked})
	clock.Advance(time.Second)
	p.tick()
	if got := logs.All()[0].ContextMap(); got["rows_done"] != int64(1) || got["rate_limited"] != int64(1) {
		t.Errorf("progress saw %v", got)
	}
	url, _ := startMetrics(t, t.Context(), m.Handler())
	if body := scrape(t, url); !hasLine(body, `linkbatch_rows_total{status="linked"} 1`) || !hasLine(body, "linkbatch_rate_limited_total 1") {
		t.Errorf("metrics saw:\n%s", body)
	}
}

// TestMetricsAfterRun scrapes the endpoint after a real run against the
// fake tenant over HTTP: its counters agree with the results and with the
// tenant.
func TestMetricsAfterRun(t *testing.T) {
	pairs := clitest.GenPairs("metrics", 12)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 4, RateLimit: linkertest.RateLimit{Burst: 5, Rate: 200}}, pairs)
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(tok), linker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	pacer, err := ratelimit.New(ratelimit.DefaultConfig(), linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(pacer)
	runner := &batch.Runner{Config: batch.DefaultConfig(), Client: client, Pacer: pacer, Hooks: m.Hooks()}
	var input strings.Builder
	input.WriteString("primary_user_id,secondary_user_id\n")
	for _, p := range pairs {
		fmt.Fprintf(&input, "%s,%s\n", p.Primary, p.Secondary)
	}
	input.WriteString("auth0|x,myspace|1\n") // invalid
	out, err := batch.NewResultWriter(io.Discard, true)
	if err != nil {
		t.Fatal(err)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input.String())), nil }
	sum, err := runner.Run(t.Context(), open, out)
	if err != nil {
		t.Fatal(err)
	}

	url, _ := startMetrics(t, t.Context(), m.Handler())
	body := scrape(t, url)
	st := srv.Stats()
	for _, want := range []string{
		fmt.Sprintf(`linkbatch_rows_total{status="linked"} %d`, sum.Counts[batch.StatusLinked]),
		`linkbatch_rows_total{status="invalid"} 1`,
		fmt.Sprintf(`linkbatch_requests_total{code="201",kind="link"} %d`, st.ByStatus[201]),
		fmt.Sprintf(`linkbatch_rate_limited_total %d`, st.RateLimited),
		fmt.Sprintf(`linkbatch_retries_total %d`, sum.Retries),
		`linkbatch_in_flight 0`,
		fmt.Sprintf(`linkbatch_request_duration_seconds_count{kind="link"} %d`, st.Posts),
	} {
		if !hasLine(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if sum.Counts[batch.StatusLinked] != len(pairs) {
		t.Errorf("linked %d of %d", sum.Counts[batch.StatusLinked], len(pairs))
	}
}
