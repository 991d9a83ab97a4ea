package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// These tests run the binary through the failures a long migration meets:
// faults of every kind, SIGKILL, SIGTERM, expiring tokens, contradicting
// input and resumed runs. Whatever happens, running the same command again
// must end with every row done exactly once and a truthful results file.

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// process is a run of linkbatch that the test watches and signals: a
// subprocess (cmd set) or a call of run in the test's process.
type process struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{} // closed once the process has exited
	state  *os.ProcessState
	code   int            // the exit code of a run in the test's process
	sigs   chan os.Signal // the signals of a run in the test's process
}

// startLinkbatch starts run in the test's process, as runLinkbatch does, and
// returns at once. The run is cancelled and waited for at the end of the
// test if it is still running.
func startLinkbatch(t *testing.T, inv invocation) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	env := map[string]string{"HOME": t.TempDir()}
	for _, kv := range inv.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	p := &process{stderr: &lockedBuffer{}, done: make(chan struct{}), sigs: make(chan os.Signal, 2)}
	go func() {
		defer close(p.done)
		err := run(ctx, inv.args, strings.NewReader(inv.stdin), io.Discard, p.stderr, func(k string) string { return env[k] }, p.sigs)
		p.code = exitCode(err, p.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// startBinary starts linkbatch. The process is killed at the end of the
// test if it is still running.
func startBinary(t *testing.T, inv invocation) *process {
	t.Helper()
	cmd := exec.Command(binPath, inv.args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, inv.env...)
	cmd.Stdin = strings.NewReader(inv.stdin)
	p := &process{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start linkbatch: %v", err)
	}
	go func() {
		defer close(p.done)
		_ = cmd.Wait() // the exit status is read from ProcessState
		p.state = cmd.ProcessState
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process, failing the test if it already exited.
func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if p.exited() {
		t.Fatalf("linkbatch exited (%v) before it could be sent %v\n%s", p.state, sig, p.stderr)
	}
	if p.cmd == nil {
		p.sigs <- sig
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal linkbatch: %v", err)
	}
}

// wait waits at most within for the process to exit and returns its exit
// code (-1 when a signal killed it).
func (p *process) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		if p.cmd == nil {
			return p.code
		}
		return p.state.ExitCode()
	case <-time.After(within):
		t.Fatalf("linkbatch still running after %v\n%s", within, p.stderr)
		return 0
	}
}

// waitUntil polls cond until it holds, failing the test after timeout or
// as soon as p (if not nil) exits with cond still false.
func waitUntil(t *testing.T, timeout time.Duration, p *process, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			if cond() {
				return
			}
			t.Fatalf("linkbatch exited (%v) before %s\n%s", p.state, what, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rowsWritten counts the complete rows of a results file, header excluded.
func rowsWritten(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return max(bytes.Count(raw, []byte("\n"))-1, 0)
}

// checkWellFormed reads a results file that a process which exited by itself
// left behind: it ends with a whole row, every row parses, no line has two
// rows.
func checkWellFormed(t *testing.T, path string) map[int]batch.Result {
	t.Helper()
	res, raw := clitest.ReadResultFile(t, path)
	if raw != "" && !strings.HasSuffix(raw, "\n") {
		t.Errorf("%s ends in a partial row: %q", path, raw[strings.LastIndexByte(raw, '\n')+1:])
	}
	return res
}

// checkCompleteRows reads the whole rows of a results file left by a
// killed process (a partial last row is allowed): they parse and no line
// has two rows.
func checkCompleteRows(t *testing.T, path string) map[int]batch.Result {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[:bytes.LastIndexByte(raw, '\n')+1]
	res, err := clitest.ResultRows(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return res
}

// lyingProxy forwards every request to the tenant and turns every n-th
// successful link answer into a 502: the link was made, but the client is
// told it failed. A connection the tenant drops is dropped to the client.
func lyingProxy(t *testing.T, tenant string, n int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(tenant)
	if err != nil {
		t.Fatal(err)
	}
	var links, lies atomic.Int64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) },
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method != http.MethodPost || resp.StatusCode != http.StatusCreated || links.Add(1)%n != 0 {
				return nil
			}
			lies.Add(1)
			body := `{"statusCode":502,"error":"Bad Gateway","message":"Bad Gateway","errorCode":"server_error"}`
			_ = resp.Body.Close()
			resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
			resp.Body = io.NopCloser(strings.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
			return nil
		},
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) },
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	px := httptest.NewUnstartedServer(rp)
	px.Config.ErrorLog = log.New(io.Discard, "", 0)
	px.Start()
	t.Cleanup(px.Close)
	return px, &lies
}

// TestReliabilityMixedFaults runs the binary, built without the race
// detector: it must be sending before the other clients' storm ends.
func TestReliabilityMixedFaults(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("mix", 300)
	srv, tok := clitest.NewTenant(t, linkertest.Config{
		Seed:      11,
		RateLimit: linkertest.RateLimit{Burst: 30, Rate: 100},
		Faults: linkertest.Faults{
			Err5xx: 0.02, DropBefore: 0.02, DropAfter: 0.02,
			Hang: 0.02, HangFor: 3 * time.Second,
		},
	}, pairs)
	px, lies := lyingProxy(t, srv.URL, 40)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	// Other clients of the tenant drain its bucket during the first three
	// seconds, longer than the binary takes to start and learn the
	// bucket: linkbatch meets 429s whatever pace it starts at.
	other := srv.IssueToken(time.Hour)
	var storm sync.WaitGroup
	defer storm.Wait()
	stormCtx, stopStorm := context.WithTimeout(t.Context(), 3*time.Second)
	defer stopStorm()
	for range 4 {
		storm.Go(func() {
			for stormCtx.Err() == nil {
				ctx, cancel := context.WithTimeout(stormCtx, 100*time.Millisecond) // past a stall
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v2/users/auth0%7Cnobody", nil)
				req.Header.Set("Authorization", "Bearer "+other)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_ = resp.Body.Close()
				}
				cancel()
			}
		})
	}
	start := time.Now()
	out := runBinary(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--rate", "200", "--burst", "20",
			"--workers", "16", "--timeout", "500ms", "--max-retries", "15"},
		env: []string{"AUTH0_DOMAIN=" + px.URL, "AUTH0_TOKEN=" + tok},
	})
	t.Logf("300 rows through faults in %v", time.Since(start).Round(time.Millisecond))
	if out.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if len(out.results) != len(pairs) {
		t.Errorf("%d result rows for %d input rows", len(out.results), len(pairs))
	}
	for line, r := range out.results {
		if r.Status == batch.StatusFailed {
			t.Errorf("line %d failed: %s", line, r.Error)
		}
	}
	st := srv.Stats()
	if summaryInt(t, out.stderr, "rate_limited") == 0 {
		t.Errorf("linkbatch saw no 429")
	}
	t.Logf("tenant: %d requests, %d 429, %d 5xx, %d dropped before, %d dropped after, %d stalled, %d relinks; proxy lied %d times",
		st.Requests, st.RateLimited, st.Injected5xx, st.DroppedBefore, st.DroppedAfter, st.Stalled, st.Relinks, lies.Load())
	if st.RateLimited == 0 || st.Injected5xx == 0 || st.DroppedBefore == 0 || st.DroppedAfter == 0 || st.Stalled == 0 || lies.Load() == 0 {
		t.Errorf("not every fault was exercised: %+v, %d 5xx after the link was made", st, lies.Load())
	}
}

func TestReliabilityKilledAndResumed(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("kill", 240)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 12, RateLimit: linkertest.RateLimit{Burst: 10, Rate: 40}}, pairs)
	// Two exact repeats: skipped rows are final too.
	in := writeInput(t, pairs, pairs[3].Primary+","+pairs[3].Secondary, pairs[7].Primary+","+pairs[7].Secondary)
	rows := len(pairs) + 2
	outPath := filepath.Join(t.TempDir(), "results.csv")
	// The same command every time: --resume on a missing file starts afresh.
	inv := invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--resume", "--workers", "8"},
		env:  tenantEnv(srv, tok),
	}

	tornLine := 0
	for i, frac := range []float64{0.2, 0.5, 0.8} {
		p := startBinary(t, inv)
		want := int(frac * float64(rows))
		waitUntil(t, 30*time.Second, p, fmt.Sprintf("%d result rows", want), func() bool { return rowsWritten(outPath) >= want })
		p.signal(t, syscall.SIGKILL)
		if code := p.wait(t, 10*time.Second); code != -1 {
			t.Fatalf("kill %d: exit code %d, want death by signal\n%s", i+1, code, p.stderr)
		}
		got := checkCompleteRows(t, outPath)
		if i > 0 && !strings.Contains(p.stderr.String(), `"msg":"resuming"`) {
			t.Errorf("run %d did not resume:\n%s", i+1, p.stderr)
		}
		if tornLine != 0 {
			if !strings.Contains(p.stderr.String(), `"torn_row_repaired":true`) {
				t.Errorf("the torn row was not reported repaired:\n%s", p.stderr)
			}
			if _, ok := got[tornLine]; !ok {
				t.Errorf("line %d, torn by a crash, was not processed again", tornLine)
			}
			tornLine = 0
		}
		t.Logf("kill %d at %d/%d rows (%d links applied)", i+1, len(got), rows, srv.Stats().LinksApplied)
		if i == 1 {
			tornLine = tearLastRow(t, outPath)
		}
	}

	out := runLinkbatch(t, inv)
	if out.code != exitOK {
		t.Fatalf("final run: exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if len(out.results) != rows {
		t.Errorf("%d result rows for %d input rows", len(out.results), rows)
	}
	for _, line := range []int{len(pairs) + 2, len(pairs) + 3} {
		if r := out.results[line]; r.Status != batch.StatusSkipped {
			t.Errorf("line %d: %q, want skipped", line, r.Status)
		}
	}
	st := srv.Stats()
	t.Logf("tenant: %d POSTs, %d links, %d relinks after kills", st.Posts, st.LinksApplied, st.Relinks)
}

func TestReliabilityResumeAfterCrashInHeader(t *testing.T) {
	pairs := clitest.GenPairs("header", 4)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	args := []string{"run", "--in", in, "--out", outPath, "--resume"}
	if out := runLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)}); out.code != exitOK {
		t.Fatalf("first run: exit %d\n%s", out.code, out.stderr)
	}
	// As if the run had been killed while writing the header: every pair
	// was linked, no row was recorded.
	if err := os.Truncate(outPath, 10); err != nil {
		t.Fatal(err)
	}
	out := runLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("resume: exit %d, want 0\n%s", out.code, out.stderr)
	}
	if !strings.Contains(out.stderr, `"torn_row_repaired":true`) {
		t.Errorf("the torn header was not reported repaired:\n%s", out.stderr)
	}
	checkWellFormed(t, outPath)
	checkAllLinked(t, srv, pairs, out)
	for line, r := range out.results {
		if r.Status != batch.StatusAlreadyLinked {
			t.Errorf("line %d: %q, want already_linked (linked by the crashed run)", line, r.Status)
		}
	}
}

// tearLastRow replaces the last row of a results file by its first half
// with no line end, as a crash in the middle of writing it leaves it, and
// returns that row's input line.
func tearLastRow(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[:bytes.LastIndexByte(raw, '\n')+1] // a crash may have torn one already
	start := bytes.LastIndexByte(raw[:len(raw)-1], '\n') + 1
	last := raw[start:]
	var line int
	if _, err := fmt.Sscanf(string(last), "%d,", &line); err != nil || line < 2 {
		t.Fatalf("last row %q: %v", last, err)
	}
	torn := append(raw[:start:start], last[:len(last)/2]...)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	return line
}

func TestReliabilitySIGTERMDrainsAndResumes(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("term", 200)
	srv, tok := clitest.NewTenant(t, linkertest.Config{
		Seed:   13,
		Faults: linkertest.Faults{Latency: 200 * time.Millisecond, Hang: 0.1, HangFor: time.Minute},
	}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	const grace = time.Second
	args := []string{"run", "--in", in, "--out", outPath, "--rate", "50", "--burst", "8", "--timeout", "30s", "--grace", grace.String()}
	p := startBinary(t, invocation{args: args, env: tenantEnv(srv, tok)})
	waitUntil(t, 30*time.Second, p, "20 result rows", func() bool { return rowsWritten(outPath) >= 20 })
	sent := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t, grace+10*time.Second)
	took := time.Since(sent)
	t.Logf("exited %v after SIGTERM (grace %v)", took.Round(time.Millisecond), grace)
	if code != exitAborted {
		t.Fatalf("exit %d, want %d\n%s", code, exitAborted, p.stderr)
	}
	if took > grace+2*time.Second {
		t.Errorf("exited %v after SIGTERM; grace is %v", took, grace)
	}
	stderr := p.stderr.String()
	got := checkWellFormed(t, outPath)
	if remaining := summaryInt(t, stderr, "remaining"); remaining != len(pairs)-len(got) {
		t.Errorf("summary: %d rows remaining, but %d of %d rows have a result", remaining, len(got), len(pairs))
	}
	if !strings.Contains(stderr, "--resume") {
		t.Errorf("stderr does not say how to resume:\n%s", stderr)
	}
	for line, r := range got {
		if r.Status != batch.StatusLinked {
			t.Errorf("line %d: %q (%s) after a drain; rows in flight must finish or leave no row", line, r.Status, r.Error)
		}
	}
	if rowsAfterSignal(stderr) == 0 {
		t.Errorf("no row in flight finished during the grace period:\n%s", stderr)
	}
	if len(got) >= len(pairs) {
		t.Fatalf("the run finished before the signal; the test proves nothing")
	}
	t.Logf("%d rows done at the signal", len(got))

	resumeToEnd(t, srv, tok, args, pairs)
}

// TestRunSignalsInProcess: the signals run is handed stop it as main's do:
// the first lets rows in flight finish and leaves the rest for --resume,
// the second cancels them at once.
func TestRunSignalsInProcess(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		signals int
		inLog   string
	}{
		{"one signal drains", 1, "signal received: no new rows are started"},
		{"second signal cancels", 2, "second signal: cancelling rows in flight"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pairs := clitest.GenPairs("sig", 100)
			srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 5, Faults: linkertest.Faults{Latency: 100 * time.Millisecond}}, pairs)
			in := writeInput(t, pairs)
			outPath := filepath.Join(t.TempDir(), "results.csv")
			args := []string{"run", "--in", in, "--out", outPath, "--rate", "50", "--burst", "8", "--grace", "30s"}
			p := startLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)})
			waitUntil(t, 30*time.Second, p, "10 result rows", func() bool { return rowsWritten(outPath) >= 10 })
			for range tt.signals {
				p.signal(t, syscall.SIGTERM)
			}
			if code := p.wait(t, 20*time.Second); code != exitAborted {
				t.Fatalf("exit %d, want %d\n%s", code, exitAborted, p.stderr)
			}
			stderr := p.stderr.String()
			if !strings.Contains(stderr, tt.inLog) || !strings.Contains(stderr, "--resume") {
				t.Errorf("stderr lacks %q or how to resume:\n%s", tt.inLog, lastLines(stderr, 5))
			}
			got := checkWellFormed(t, outPath)
			if len(got) >= len(pairs) {
				t.Fatalf("the run finished before the signal; the test proves nothing")
			}
			resumeToEnd(t, srv, tok, args, pairs)
		})
	}
}

// rowsAfterSignal counts the rows logged after the signal was.
func rowsAfterSignal(stderr string) int {
	_, after, ok := strings.Cut(stderr, "signal received")
	if !ok {
		return 0
	}
	return strings.Count(after, `"msg":"row"`)
}

func TestReliabilitySecondSIGTERMExitsAtOnce(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("term2", 120)
	srv, tok := clitest.NewTenant(t, linkertest.Config{
		Seed:   14,
		Faults: linkertest.Faults{Latency: 20 * time.Millisecond, Hang: 0.25, HangFor: time.Minute},
	}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	args := []string{"run", "--in", in, "--out", outPath, "--rate", "100", "--burst", "8", "--timeout", "2m", "--grace", "2m"}
	p := startBinary(t, invocation{args: args, env: tenantEnv(srv, tok)})
	waitUntil(t, 30*time.Second, p, "5 result rows", func() bool { return rowsWritten(outPath) >= 5 })
	waitUntil(t, 30*time.Second, p, "a stalled request", func() bool { return srv.Stats().Stalled > 0 })
	p.signal(t, syscall.SIGTERM)
	waitUntil(t, 10*time.Second, p, "the first signal logged", func() bool { return strings.Contains(p.stderr.String(), "signal received") })
	sent := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t, 30*time.Second)
	took := time.Since(sent)
	t.Logf("exited %v after the second SIGTERM", took.Round(time.Millisecond))
	if code != exitAborted {
		t.Fatalf("exit %d, want %d\n%s", code, exitAborted, p.stderr)
	}
	if took > 3*time.Second {
		t.Errorf("exited %v after the second SIGTERM, with a grace of 2m: not at once", took)
	}
	got := checkWellFormed(t, outPath)
	for line, r := range got {
		if r.Status != batch.StatusLinked {
			t.Errorf("line %d: %q (%s); a cancelled row must leave no row", line, r.Status, r.Error)
		}
	}

	resumeToEnd(t, srv, tok, args, pairs)
}

// TestReliabilityTokensExpireEveryTwoSeconds runs the binary: its bound on
// the run's length counts the time a process takes to start.
func TestReliabilityTokensExpireEveryTwoSeconds(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("ttl", 150)
	srv, _ := clitest.NewTenant(t, linkertest.Config{
		Seed:     15,
		ClientID: "client-ttl", ClientSecret: "secret-ttl-0123456789", TokenTTL: 2 * time.Second,
		// Requests wait before the token is checked: some tokens expire
		// on their way, and the tenant answers 401 "expired".
		Faults: linkertest.Faults{Latency: 50 * time.Millisecond, Jitter: 900 * time.Millisecond},
	}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	start := time.Now()
	out := runBinary(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--rate", "25", "--burst", "5", "--workers", "16"},
		env:  []string{"AUTH0_DOMAIN=" + srv.URL, "AUTH0_CLIENT_ID=client-ttl", "AUTH0_CLIENT_SECRET=secret-ttl-0123456789"},
	})
	took := time.Since(start)
	st := srv.Stats()
	t.Logf("run took %v: %d token requests, %d answers 401", took.Round(time.Millisecond), st.TokenRequests, st.ByStatus[401])
	if out.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s", out.code, out.stderr)
	}
	if took < 6*time.Second {
		t.Errorf("the run took %v, too short to outlive several tokens", took)
	}
	checkAllLinked(t, srv, pairs, out)
	if n := summaryInt(t, out.stderr, "failed"); n != 0 {
		t.Errorf("%d rows failed", n)
	}
	if st.TokenRequests < 3 {
		t.Errorf("%d token requests in %v with tokens living 2s", st.TokenRequests, took)
	}
	if st.ByStatus[401] == 0 {
		t.Errorf("no token expired on its way: the renew-and-retry path was not exercised")
	}
}

func TestReliabilityConflictsSendNothing(t *testing.T) {
	valid := []pair{
		{Primary: "auth0|cf-a", Secondary: "google-oauth2|cf-s1"},
		{Primary: "auth0|cf-c", Secondary: "github|cf-c1"},
		{Primary: "auth0|cf-e", Secondary: "github|cf-e1"},
	}
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, valid)
	srv.Seed("auth0|cf-b", "auth0|cf-d", "auth0|cf-x")
	in := writeInput(t, nil,
		"auth0|cf-a,google-oauth2|cf-s1", // 2
		"auth0|cf-b,google-oauth2|cf-s1", // 3: the secondary of line 2 again, to another primary
		"auth0|cf-c,github|cf-c1",        // 4
		"github|cf-c1,auth0|cf-x",        // 5: a chain: its primary is the secondary of line 4
		"auth0|cf-d,auth0|cf-a",          // 6: a chain: its secondary is the primary of line 2
		"auth0|cf-e,github|cf-e1",        // 7
		"github|cf-e1,auth0|cf-e",        // 8: line 7 the other way round
	)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath}, env: tenantEnv(srv, tok)})
	if out.code != exitProblems {
		t.Fatalf("exit %d, want %d\n%s", out.code, exitProblems, out.stderr)
	}
	tests := []struct {
		line, other int
		field       string
		primary     string
	}{
		{3, 2, "secondary_user_id", "auth0|cf-b"},
		{5, 4, "primary_user_id", "github|cf-c1"},
		{6, 2, "secondary_user_id", "auth0|cf-d"},
		{8, 7, "secondary_user_id", "github|cf-e1"},
	}
	st := srv.Stats()
	for _, tt := range tests {
		r := out.results[tt.line]
		if r.Status != batch.StatusInvalid || !strings.Contains(r.Error, tt.field) || !strings.Contains(r.Error, fmt.Sprintf("line %d", tt.other)) {
			t.Errorf("line %d: %q %q, want invalid naming %s and line %d", tt.line, r.Status, r.Error, tt.field, tt.other)
		}
		if r.Attempts != 0 || r.HTTPStatus != 0 {
			t.Errorf("line %d: %d attempts, http %d; nothing may be sent", tt.line, r.Attempts, r.HTTPStatus)
		}
		if n := st.PostsByPrimary[tt.primary]; n != 0 {
			t.Errorf("line %d: %d POSTs to %s", tt.line, n, tt.primary)
		}
	}
	if r := out.results[8]; !strings.Contains(r.Error, "other way round") {
		t.Errorf("line 8: %q, want it called line 7 reversed", r.Error)
	}
	for line, p := range map[int]pair{2: valid[0], 4: valid[1], 7: valid[2]} {
		if r := out.results[line]; r.Status != batch.StatusLinked {
			t.Errorf("line %d: %q (%s), want linked", line, r.Status, r.Error)
		}
		if got, _ := srv.LinkedTo(p.Secondary); got != p.Primary {
			t.Errorf("line %d: %s linked to %q", line, p.Secondary, got)
		}
	}
	if st.Posts != len(valid) {
		t.Errorf("%d POSTs, want %d (the valid rows only)", st.Posts, len(valid))
	}
	for _, id := range []string{"auth0|cf-b", "auth0|cf-d", "auth0|cf-x"} {
		if u, ok := srv.User(id); !ok || len(u.Identities) != 1 {
			t.Errorf("%s was touched: %+v (standalone %v)", id, u, ok)
		}
	}
}

func TestReliabilityResumeRefusals(t *testing.T) {
	pairs := clitest.GenPairs("refuse", 6)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	dir := t.TempDir()
	in := writeInput(t, pairs)
	other := writeInput(t, pairs[:5])
	done := filepath.Join(dir, "done.csv")
	if out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", done}, env: tenantEnv(srv, tok)}); out.code != exitOK {
		t.Fatalf("first run: exit %d\n%s", out.code, out.stderr)
	}
	planned := filepath.Join(dir, "planned.csv")
	if out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", planned, "--dry-run"}}); out.code != exitOK {
		t.Fatalf("dry run: exit %d\n%s", out.code, out.stderr)
	}
	orphan := filepath.Join(dir, "orphan.csv")
	raw, err := os.ReadFile(done)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		args  []string
		out   string
		wants []string
	}{
		{"different input", []string{"run", "--in", other, "--out", done, "--resume"}, done, []string{"different input"}},
		{"existing results without --resume", []string{"run", "--in", in, "--out", done}, done, []string{"already exists", "--resume"}},
		{"dry-run results resumed by a real run", []string{"run", "--in", in, "--out", planned, "--resume"}, planned, []string{"dry run", "real run"}},
		{"results without their run record", []string{"run", "--in", in, "--out", orphan, "--resume"}, orphan, []string{"cannot resume"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := os.ReadFile(tt.out)
			if err != nil {
				t.Fatal(err)
			}
			requests := srv.Stats().Requests
			out := runLinkbatch(t, invocation{args: tt.args, env: tenantEnv(srv, tok)})
			if out.code != exitUsage {
				t.Errorf("exit %d, want %d\n%s", out.code, exitUsage, out.stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(out.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, out.stderr)
				}
			}
			if after, _ := os.ReadFile(tt.out); !bytes.Equal(before, after) {
				t.Errorf("a refused run changed %s", tt.out)
			}
			if n := srv.Stats().Requests - requests; n != 0 {
				t.Errorf("a refused run sent %d requests", n)
			}
		})
	}
}

func TestReliabilityResumeRetriesTransientFailures(t *testing.T) {
	pairs := clitest.GenPairs("transient", 80)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 16, Faults: linkertest.Faults{Err5xx: 0.4, DropAfter: 0.2}}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	args := []string{"run", "--in", in, "--out", outPath, "--rate", "500", "--burst", "50", "--max-retries", "0"}
	first := runLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)})
	if first.code != exitProblems {
		t.Fatalf("first run: exit %d, want %d\n%s", first.code, exitProblems, first.stderr)
	}
	transient := 0
	for line, r := range first.results {
		switch {
		case r.Status == batch.StatusFailed && r.Retryable:
			transient++
		case r.Status == batch.StatusFailed:
			t.Errorf("line %d failed for good (%d %s) on a transient fault", line, r.HTTPStatus, r.Error)
		}
	}
	if transient == 0 {
		t.Fatalf("no row failed transiently; the test proves nothing")
	}
	t.Logf("%d rows failed transiently", transient)

	out := resumeToEnd(t, srv, tok, args, pairs)
	already := 0
	for line, r := range out.results {
		if prev := first.results[line]; prev.Final() && r != prev {
			t.Errorf("line %d: final row %+v rewritten as %+v", line, prev, r)
		}
		if r.Status == batch.StatusAlreadyLinked {
			already++
		}
	}
	if st := srv.Stats(); st.DroppedAfter > 0 && already == 0 {
		t.Errorf("%d links were made with the answer lost, yet no row says already_linked", st.DroppedAfter)
	}
}

func TestReliabilityInterruptedResumeTellsRemaining(t *testing.T) {
	pairs := clitest.GenPairs("remain", 60)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 17, Faults: linkertest.Faults{Err5xx: 0.5}}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	args := []string{"run", "--in", in, "--out", outPath, "--rate", "500", "--burst", "50", "--max-retries", "0", "--workers", "2", "--grace", "5s"}
	if first := runLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)}); first.code != exitProblems {
		t.Fatalf("first run: exit %d, want %d\n%s", first.code, exitProblems, first.stderr)
	}

	// The resumed run retries the failed rows, scattered over the input,
	// and is interrupted after its first request: most kept rows lie
	// beyond the row it stopped at.
	srv.SetFaults(linkertest.Faults{Latency: 300 * time.Millisecond})
	posts := srv.Stats().Posts
	p := startBinary(t, invocation{args: append(args, "--resume"), env: tenantEnv(srv, tok)})
	waitUntil(t, 30*time.Second, p, "a request from the resumed run", func() bool { return srv.Stats().Posts > posts })
	p.signal(t, syscall.SIGINT)
	if code := p.wait(t, 15*time.Second); code != exitAborted {
		t.Fatalf("interrupted resume: exit %d, want %d\n%s", code, exitAborted, p.stderr)
	}
	got := checkWellFormed(t, outPath)
	final := 0
	for _, r := range got {
		if r.Final() {
			final++
		}
	}
	stderr := p.stderr.String()
	if n := summaryInt(t, stderr, "remaining"); n != len(pairs)-final {
		t.Errorf("summary: %d rows remaining; the results file has %d final rows of %d", n, final, len(pairs))
	}
	if !strings.Contains(stderr, fmt.Sprintf("%d rows have no result yet", len(pairs)-final)) {
		t.Errorf("stderr does not say %d rows have no result yet:\n%s", len(pairs)-final, stderr)
	}

	resumeToEnd(t, srv, tok, args, pairs)
}

func TestReliabilityRetryFailed(t *testing.T) {
	pairs := clitest.GenPairs("retryfailed", 5)
	missing := pairs[2]
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, append(append([]pair{}, pairs[:2]...), pairs[3:]...))
	srv.Seed(missing.Secondary) // the primary does not exist yet
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	args := []string{"run", "--in", in, "--out", outPath}
	line := 4

	first := runLinkbatch(t, invocation{args: args, env: tenantEnv(srv, tok)})
	if first.code != exitProblems {
		t.Fatalf("first run: exit %d, want %d\n%s", first.code, exitProblems, first.stderr)
	}
	if r := first.results[line]; r.Status != batch.StatusFailed || r.HTTPStatus != http.StatusNotFound || r.Retryable {
		t.Fatalf("line %d: %+v, want failed 404, not retryable", line, r)
	}

	// A plain resume keeps the permanent failure, sends nothing, and still
	// reports it.
	again := runLinkbatch(t, invocation{args: append(args, "--resume"), env: tenantEnv(srv, tok)})
	if again.code != exitProblems {
		t.Errorf("resume over a failed row: exit %d, want %d\n%s", again.code, exitProblems, again.stderr)
	}
	if r := again.results[line]; r != first.results[line] {
		t.Errorf("line %d: %+v, want it kept as %+v", line, r, first.results[line])
	}
	if n := srv.Stats().PostsByPrimary[missing.Primary]; n != 1 {
		t.Errorf("%d POSTs for the failed row, want the first run's 1", n)
	}

	srv.Seed(missing.Primary)
	out := runLinkbatch(t, invocation{args: append(args, "--resume", "--retry-failed"), env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("resume --retry-failed: exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if len(out.results) != len(pairs) {
		t.Errorf("%d result rows for %d input rows", len(out.results), len(pairs))
	}
}

// resumeToEnd clears the tenant's faults, runs args again with --resume,
// and checks that the run completes: exit 0, every pair linked once, one
// result row per input row.
func resumeToEnd(t *testing.T, srv *linkertest.Server, tok string, args []string, pairs []pair) outcome {
	t.Helper()
	srv.SetFaults(linkertest.Faults{})
	out := runLinkbatch(t, invocation{args: append(args, "--resume"), env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("resume: exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if len(out.results) != len(pairs) {
		t.Errorf("%d result rows for %d input rows", len(out.results), len(pairs))
	}
	return out
}
