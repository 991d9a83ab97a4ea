package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// binPath is the linkbatch binary built once for the end-to-end tests, which
// run it as a subprocess against a fake tenant over HTTP.
var binPath string

func TestMain(m *testing.M) { clitest.Main(m, &binPath) }

// skipShort skips, with -short, a test that waits for seconds on the fake
// tenant's pace, timeouts or grace periods.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("waits for seconds on the fake tenant; run without -short")
	}
}

// outcome is what one run of the binary produced.
type outcome struct {
	code           int
	stdout, stderr string
	results        map[int]batch.Result // by line
	resultsRaw     string
}

// invocation describes one run of the binary.
type invocation struct {
	args  []string
	env   []string
	stdin string
}

// runLinkbatch runs linkbatch in the test's process, calling run as main
// does with inv's environment alone (no variable of the test process), and
// reads the results file named by --out, if any.
func runLinkbatch(t *testing.T, inv invocation) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	env := map[string]string{"HOME": t.TempDir()}
	for _, kv := range inv.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	// The logger and the progress writer write stderr from their own
	// goroutines.
	var stdout, stderr lockedBuffer
	err := run(ctx, inv.args, strings.NewReader(inv.stdin), &stdout, &stderr, func(k string) string { return env[k] }, nil)
	out := outcome{code: exitCode(err, &stderr), stdout: stdout.String(), stderr: stderr.String()}
	out.results, out.resultsRaw = readOut(t, inv.args)
	return out
}

// readOut reads the results file named by --out in args, if any.
func readOut(t *testing.T, args []string) (map[int]batch.Result, string) {
	t.Helper()
	var (
		res map[int]batch.Result
		raw string
	)
	for i, a := range args {
		if a == "--out" && i+1 < len(args) && args[i+1] != "-" {
			res, raw = clitest.ReadResultFile(t, args[i+1])
		}
	}
	return res, raw
}

// runBinary runs the linkbatch binary as a subprocess, with inv's
// environment and PATH alone, and reads the results file named by --out,
// if any.
func runBinary(t *testing.T, inv invocation) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, inv.args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, inv.env...)
	cmd.Stdin = strings.NewReader(inv.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := outcome{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		out.code = ee.ExitCode()
	default:
		t.Fatalf("run linkbatch: %v", err)
	}
	out.results, out.resultsRaw = readOut(t, inv.args)
	return out
}

// pair is one row of a generated input.
type pair = clitest.Pair

// writeInput writes pairs (and extra raw lines) as an input file.
func writeInput(t *testing.T, pairs []pair, extra ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "%s,%s\n", clitest.CSVQuote(p.Primary), clitest.CSVQuote(p.Secondary))
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	path := filepath.Join(t.TempDir(), "pairs.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func tenantEnv(srv *linkertest.Server, token string) []string {
	return []string{"AUTH0_DOMAIN=" + srv.URL, "AUTH0_TOKEN=" + token}
}

// checkAllLinked asserts that every pair is linked in the tenant exactly
// once and has a linked or already_linked result row.
func checkAllLinked(t *testing.T, srv *linkertest.Server, pairs []pair, out outcome) {
	t.Helper()
	for i, p := range pairs {
		line := i + 2
		if got, ok := srv.LinkedTo(p.Secondary); !ok || got != p.Primary {
			t.Errorf("line %d: %s linked to %q (%v), want %s", line, p.Secondary, got, ok, p.Primary)
		}
		r, ok := out.results[line]
		switch {
		case !ok:
			t.Errorf("line %d: no result row", line)
		case r.Status != batch.StatusLinked && r.Status != batch.StatusAlreadyLinked:
			t.Errorf("line %d: status %q (%s), want linked", line, r.Status, r.Error)
		}
	}
	st := srv.Stats()
	if st.LinksApplied != len(pairs) || st.DoubleLinks != 0 {
		t.Errorf("tenant applied %d links (%d double), want %d", st.LinksApplied, st.DoubleLinks, len(pairs))
	}
}

func TestRunLinksEveryValidPairOnce(t *testing.T) {
	pairs := clitest.GenPairs("ok", 40)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 1, RateLimit: linkertest.RateLimit{Burst: 50, Rate: 200}}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--rate", "200", "--burst", "50"},
		env:  tenantEnv(srv, tok),
	})
	if out.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if len(out.results) != len(pairs) {
		t.Errorf("%d result rows, want %d", len(out.results), len(pairs))
	}
	st := srv.Stats()
	if st.Posts != len(pairs) {
		t.Errorf("tenant saw %d POSTs for %d pairs", st.Posts, len(pairs))
	}
	for _, p := range pairs {
		if _, exists := srv.User(p.Secondary); exists {
			t.Errorf("secondary %s still a standalone user", p.Secondary)
		}
		u, _ := srv.User(p.Primary)
		if len(u.Identities) != 2 {
			t.Errorf("primary %s has %d identities, want 2", p.Primary, len(u.Identities))
		}
	}
	if !strings.Contains(out.stderr, `"msg":"summary"`) || !strings.Contains(out.stderr, `"linked":40`) {
		t.Errorf("no JSON summary with 40 linked in stderr:\n%s", out.stderr)
	}
}

func TestRunBadRowsSendNothing(t *testing.T) {
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, nil)
	srv.Seed("auth0|p1", "github|s1")
	in := writeInput(t, nil,
		"auth0|p1,",                      // 2: blank secondary
		"auth0|p1,myspace|1",             // 3: provider not in the enum
		",github|s1",                     // 4: blank primary
		"auth0|p1,auth0|p1",              // 5: primary equals secondary
		`auth0|p1,github|3"3`,            // 6: stray quote
		"auth0|p1,github|s1,extra,field", // 7: wrong field count
		"noprovider,github|s1",           // 8: primary without provider
	)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath}, env: tenantEnv(srv, tok)})
	if out.code != exitProblems {
		t.Fatalf("exit %d, want %d\n%s", out.code, exitProblems, out.stderr)
	}
	wantField := map[int]string{2: "secondary_user_id", 3: "secondary_user_id", 4: "primary_user_id", 5: "secondary_user_id", 6: "bare \"", 7: "fields", 8: "primary_user_id"}
	for line, field := range wantField {
		r, ok := out.results[line]
		if !ok || r.Status != batch.StatusInvalid || !strings.Contains(r.Error, field) {
			t.Errorf("line %d: %+v, want invalid naming %q", line, r, field)
		}
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("tenant saw %d requests for an input of bad rows", st.Requests)
	}
}

// TestRunAbsorbs429Storm runs the binary, built without the race detector:
// it must go fast enough to meet 429s.
func TestRunAbsorbs429Storm(t *testing.T) {
	skipShort(t)
	pairs := clitest.GenPairs("storm", 60)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 2, RateLimit: linkertest.RateLimit{Burst: 5, Rate: 40, RetryAfter: true}}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")

	// Another client drains the tenant's bucket for the first two seconds
	// of the run: linkbatch meets a storm of 429s.
	other := srv.IssueToken(time.Hour)
	stormCtx, stopStorm := context.WithTimeout(t.Context(), 2*time.Second)
	defer stopStorm()
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		for stormCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(stormCtx, http.MethodGet, srv.URL+"/api/v2/users/auth0%7Cnobody", nil)
			req.Header.Set("Authorization", "Bearer "+other)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
	}()
	out := runBinary(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--rate", "500", "--burst", "50", "--workers", "16"},
		env:  tenantEnv(srv, tok),
	})
	stopStorm()
	<-stormDone
	if out.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if n := summaryInt(t, out.stderr, "rate_limited"); n == 0 {
		t.Errorf("linkbatch saw no 429: the test did not make a storm")
	}
}

// summaryInt returns a number from the JSON summary line of a run's log.
func summaryInt(t *testing.T, stderr, field string) int {
	t.Helper()
	for line := range strings.Lines(stderr) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "summary" {
			continue
		}
		v, ok := m[field].(float64)
		if !ok {
			t.Fatalf("summary has no number %q: %s", field, line)
		}
		return int(v)
	}
	t.Fatalf("no summary line in:\n%s", stderr)
	return 0
}

func TestRunRetriesFaults(t *testing.T) {
	skipShort(t)
	pairs := clitest.GenPairs("fault", 80)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 3, Faults: linkertest.Faults{Err5xx: 0.15, DropBefore: 0.1, DropAfter: 0.1}}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--rate", "500", "--burst", "50", "--max-retries", "12"},
		env:  tenantEnv(srv, tok),
	})
	if out.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	st := srv.Stats()
	if st.Injected5xx == 0 || st.DroppedBefore == 0 || st.DroppedAfter == 0 {
		t.Errorf("faults not exercised: %+v", st)
	}
	already := 0
	for _, r := range out.results {
		if r.Status == batch.StatusAlreadyLinked {
			already++
		}
		if r.Attempts > 1 && r.Status == batch.StatusLinked && r.HTTPStatus != 201 {
			t.Errorf("line %d linked with http_status %d", r.Line, r.HTTPStatus)
		}
	}
	if already == 0 {
		t.Errorf("no row was verified as already linked after an applied-then-dropped answer (%d dropped after)", st.DroppedAfter)
	}
}

func TestRunDryRunSendsNoRequest(t *testing.T) {
	pairs := clitest.GenPairs("dry", 10)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	in := writeInput(t, pairs, "auth0|x,myspace|1")
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath, "--dry-run"}, env: tenantEnv(srv, tok)})
	if out.code != exitProblems {
		t.Fatalf("exit %d, want %d\n%s", out.code, exitProblems, out.stderr)
	}
	for i := range pairs {
		if r := out.results[i+2]; r.Status != batch.StatusPlanned {
			t.Errorf("line %d: %q, want planned", i+2, r.Status)
		}
	}
	if r := out.results[len(pairs)+2]; r.Status != batch.StatusInvalid {
		t.Errorf("bad row: %q, want invalid", r.Status)
	}
	if st := srv.Stats(); st.Requests != 0 || st.Posts != 0 {
		t.Errorf("dry run sent %d requests (%d POSTs)", st.Requests, st.Posts)
	}
	for _, p := range pairs {
		if _, ok := srv.LinkedTo(p.Secondary); ok {
			t.Errorf("dry run linked %s", p.Secondary)
		}
	}
	// And without any credentials at all.
	out = runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", "-", "--dry-run"}})
	if out.code != exitProblems || !strings.Contains(out.stdout, "planned") {
		t.Errorf("dry run without credentials: exit %d\n%s\n%s", out.code, out.stdout, out.stderr)
	}
}

func TestRunIDsReachTenantIntact(t *testing.T) {
	pairs := []pair{
		{Primary: "auth0|a/b", Secondary: "github|c/d"},
		{Primary: "auth0|100%", Secondary: "github|50%25"},
		{Primary: "auth0|what?x=1&y=2", Secondary: "google-oauth2|q?r"},
		{Primary: "auth0|frag#ment", Secondary: "twitter|h#t"},
		{Primary: "auth0|with space", Secondary: "samlp|my conn|bob smith@acme.com"},
		{Primary: "auth0|../../etc", Secondary: "samlp|acme|a/b?c#d %e|f"},
		{Primary: "auth0|%2F%3F", Secondary: "oidc|okta|x|y|z"},
	}
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath, "--rate", "100", "--burst", "10"}, env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", out.code, out.resultsRaw, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	for i, p := range pairs {
		if r := out.results[i+2]; r.Primary != p.Primary || r.Secondary != p.Secondary {
			t.Errorf("line %d: results name %q/%q, want %q/%q", i+2, r.Primary, r.Secondary, p.Primary, p.Secondary)
		}
	}
}

func TestRunKeepsSecretsOut(t *testing.T) {
	secret := "cs-" + strings.Repeat("s3cr3t", 6)
	srv, _ := clitest.NewTenant(t, linkertest.Config{IdPTokens: true, ClientID: "client-1", ClientSecret: secret, TokenTTL: time.Hour}, nil)
	static := srv.IssueToken(time.Hour)
	for i, env := range [][]string{
		{"AUTH0_DOMAIN=" + srv.URL, "AUTH0_CLIENT_ID=client-1", "AUTH0_CLIENT_SECRET=" + secret},
		{"AUTH0_DOMAIN=" + srv.URL, "AUTH0_TOKEN=" + static},
	} {
		pairs := clitest.GenPairs(fmt.Sprintf("sec%d", i), 6)
		for _, p := range pairs {
			srv.Seed(p.Primary, p.Secondary)
		}
		jwtPrimary, jwtSecondary := fmt.Sprintf("auth0|jwtprimary%d", i), fmt.Sprintf("github|jwtsecondary%d", i)
		srv.Seed(jwtPrimary, jwtSecondary)
		jwt := srv.LinkWithToken(jwtSecondary)
		var b strings.Builder
		b.WriteString("primary_user_id,secondary_user_id,link_with\n")
		for _, p := range pairs {
			fmt.Fprintf(&b, "%s,%s,\n", p.Primary, p.Secondary)
		}
		fmt.Fprintf(&b, "%s,,%s\n", jwtPrimary, jwt)
		fmt.Fprintf(&b, "%s,github|mixed,%s\n", jwtPrimary, jwt) // invalid: link_with mixed with a secondary id
		in := writeRaw(t, b.String())
		outPath := filepath.Join(t.TempDir(), "results.csv")
		out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath, "--rate", "100", "--burst", "10", "--log-level", "debug"}, env: env})
		all := out.stdout + out.stderr + out.resultsRaw
		for name, s := range map[string]string{"client secret": secret, "static token": static, "link_with JWT": jwt, "a JWT": "eyJ", "an IdP token": "idp-secret"} {
			if strings.Contains(all, s) {
				t.Errorf("%s found in the output", name)
			}
		}
		if r := out.results[len(pairs)+2]; r.Status != batch.StatusLinked {
			t.Errorf("link_with row: %+v", r)
		}
		if len(out.results) != len(pairs)+2 {
			t.Errorf("%d results, want %d\n%s", len(out.results), len(pairs)+2, out.stderr)
		}
		if got, _ := srv.LinkedTo(jwtSecondary); got != jwtPrimary {
			t.Errorf("link_with row not linked")
		}
		if r := out.results[len(pairs)+3]; r.Status != batch.StatusInvalid || !strings.Contains(r.Error, "link_with") {
			t.Errorf("mixed link_with row: %+v", r)
		}
	}
	in := writeInput(t, clitest.GenPairs("flag", 2))
	// A secret on the command line is accepted with a warning, and still not printed.
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", "-", "--dry-run", "--client-secret", secret}})
	if !strings.Contains(out.stderr, "--client-secret") || strings.Contains(out.stderr+out.stdout, secret) {
		t.Errorf("no warning for a secret flag, or the secret printed:\n%s", out.stderr)
	}
}

func TestRunExitCodes(t *testing.T) {
	pairs := clitest.GenPairs("exit", 5)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	good := writeInput(t, pairs)
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		env      []string
		want     int
		inStderr string
	}{
		{"all linked", []string{"run", "--in", good, "--out", filepath.Join(dir, "a.csv")}, tenantEnv(srv, tok), exitOK, `"msg":"summary"`},
		{"some invalid", []string{"run", "--in", writeInput(t, nil, "auth0|z,myspace|1"), "--out", filepath.Join(dir, "b.csv")}, tenantEnv(srv, tok), exitProblems, "1 invalid"},
		{"unknown flag", []string{"run", "--nope"}, nil, exitUsage, "nope"},
		{"no command", nil, nil, exitUsage, "Usage"},
		{"missing input file", []string{"run", "--in", filepath.Join(dir, "none.csv"), "--out", filepath.Join(dir, "c.csv"), "--dry-run"}, nil, exitUsage, "none.csv"},
		{"no credentials", []string{"run", "--in", good, "--out", filepath.Join(dir, "d.csv")}, []string{"AUTH0_DOMAIN=" + srv.URL}, exitUsage, "AUTH0_TOKEN"},
		{"plain http to a remote host", []string{"run", "--in", good, "--out", filepath.Join(dir, "e.csv")}, []string{"AUTH0_DOMAIN=http://example.com", "AUTH0_TOKEN=x-0123456789abcdef"}, exitUsage, "http"},
		{"token too short", []string{"run", "--in", good, "--out", filepath.Join(dir, "g.csv")}, []string{"AUTH0_DOMAIN=" + srv.URL, "AUTH0_TOKEN=T"}, exitUsage, "at least 16"},
		{"input without header column", []string{"run", "--in", writeRaw(t, "a,b\n1,2\n"), "--out", filepath.Join(dir, "f.csv"), "--dry-run"}, nil, exitAborted, "primary_user_id"},
		{"results file exists", []string{"run", "--in", good, "--out", filepath.Join(dir, "a.csv"), "--dry-run"}, nil, exitUsage, "--resume"},
		{"help", []string{"run", "--help"}, nil, exitOK, "max-retries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runLinkbatch(t, invocation{args: tt.args, env: tt.env})
			if out.code != tt.want {
				t.Errorf("exit %d, want %d\n%s", out.code, tt.want, out.stderr)
			}
			if !strings.Contains(out.stderr+out.stdout, tt.inStderr) {
				t.Errorf("output lacks %q:\n%s%s", tt.inStderr, out.stdout, out.stderr)
			}
		})
	}
}

// TestMainExitCodes runs the binary: main maps run's errors to the exit
// codes of the process.
func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := writeInput(t, clitest.GenPairs("main", 2))
	tests := []struct {
		name     string
		args     []string
		want     int
		inStderr string
	}{
		{"version", []string{"version"}, exitOK, ""},
		{"no command", nil, exitUsage, "Usage"},
		{"some invalid", []string{"run", "--in", writeInput(t, nil, "auth0|z,myspace|1"), "--out", filepath.Join(dir, "b.csv"), "--dry-run"}, exitProblems, "1 invalid"},
		{"input without header column", []string{"run", "--in", writeRaw(t, "a,b\n1,2\n"), "--out", filepath.Join(dir, "f.csv"), "--dry-run"}, exitAborted, "primary_user_id"},
		{"help", []string{"run", "--help"}, exitOK, "max-retries"},
		{"dry run", []string{"run", "--in", good, "--out", filepath.Join(dir, "a.csv"), "--dry-run"}, exitOK, `"msg":"summary"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runBinary(t, invocation{args: tt.args})
			if out.code != tt.want {
				t.Errorf("exit %d, want %d\n%s", out.code, tt.want, out.stderr)
			}
			if !strings.Contains(out.stderr+out.stdout, tt.inStderr) {
				t.Errorf("output lacks %q:\n%s%s", tt.inStderr, out.stdout, out.stderr)
			}
		})
	}
}

func TestRunAbortsOnRevokedToken(t *testing.T) {
	pairs := clitest.GenPairs("revoked", 50)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	srv.RevokeToken(tok)
	in := writeInput(t, pairs)
	outPath := filepath.Join(t.TempDir(), "results.csv")
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath, "--rate", "100", "--burst", "10", "--workers", "4"}, env: tenantEnv(srv, tok)})
	if out.code != exitAborted {
		t.Fatalf("exit %d, want %d\n%s", out.code, exitAborted, out.stderr)
	}
	if !strings.Contains(out.stderr, "refused the credentials") || !strings.Contains(out.stderr, "Invalid token") {
		t.Errorf("stderr does not name the cause:\n%s", out.stderr)
	}
	if st := srv.Stats(); st.ByStatus[401] > 8 {
		t.Errorf("%d requests refused with 401; the run should stop after a handful", st.ByStatus[401])
	}
	if len(out.results) != 0 {
		t.Errorf("%d result rows for rows never attempted", len(out.results))
	}
}

// TestRunConfigErrorLeavesNoFiles: a configuration mistake found after the
// input was read still leaves no results file, so the corrected command
// runs without --resume.
func TestRunConfigErrorLeavesNoFiles(t *testing.T) {
	in := writeInput(t, clitest.GenPairs("typo", 3))
	outPath := filepath.Join(t.TempDir(), "results.csv")
	for _, env := range [][]string{
		{"AUTH0_DOMAIN=http://example.com", "AUTH0_TOKEN=x-0123456789abcdef"}, // plain http to a remote host
		{"AUTH0_DOMAIN=acme auth0 com", "AUTH0_TOKEN=x-0123456789abcdef"},     // not a host name
	} {
		out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath}, env: env})
		if out.code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", env, out.code, exitUsage, out.stderr)
		}
		for _, p := range []string{outPath, batch.SidecarPath(outPath)} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%v: %s was created", env, p)
			}
		}
	}
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", outPath, "--metrics-addr", "256.0.0.1:1", "--dry-run"}})
	if out.code != exitUsage {
		t.Errorf("bad --metrics-addr: exit %d, want %d\n%s", out.code, exitUsage, out.stderr)
	}
	if _, err := os.Stat(outPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad --metrics-addr: %s was created", outPath)
	}
}

func writeRaw(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
