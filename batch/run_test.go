package batch

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// newTestRunner returns a Runner that talks HTTP to srv with a static token.
func newTestRunner(t *testing.T, srv *linkertest.Server, cfg Config) *Runner {
	t.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.Rate, pc.Burst = 1000, 100
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	return &Runner{Config: cfg, Client: client, Pacer: pacer}
}

func opener(content string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }
}

// runAndCollect runs r over input and returns the results by line.
func runAndCollect(t *testing.T, r *Runner, input string) (map[int]Result, Summary) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(context.Background(), opener(input), w)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := map[int]Result{}
	if err := ReadResults(&buf, func(res Result) error { got[res.Line] = res; return nil }); err != nil {
		t.Fatal(err)
	}
	return got, sum
}

// verifyTenant holds one pair for each verdict --verify can reach.
func verifyTenant(t *testing.T) (*linkertest.Server, string) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	add := func(id, email string, verified bool) {
		srv.AddUser(linkertest.User{UserID: id, Email: email, EmailVerified: verified})
	}
	add("auth0|p1", "ann@example.com", true)
	add("github|s1", "ANN@example.com", true) // same email, other case
	add("auth0|p2", "bob@example.com", true)
	add("github|s2", "robert@example.org", true)
	add("auth0|p3", "cy@example.com", true)
	add("github|s3", "cy@example.com", false)
	add("github|s4", "dee@example.com", true) // its primary does not exist
	add("auth0|p5", "eve@example.com", true)
	add("github|s5", "eve@example.com", true)
	add("auth0|p6", "fay@example.com", true) // its secondary does not exist
	input := "primary_user_id,secondary_user_id\n" +
		"auth0|p1,github|s1\n" + // 2: fine
		"auth0|p2,github|s2\n" + // 3: emails differ
		"auth0|p3,github|s3\n" + // 4: unverified
		"auth0|p4,github|s4\n" + // 5: primary missing
		"auth0|p5,github|s5\n" + // 6: already linked
		"auth0|p6,github|s6\n" // 7: secondary missing
	return srv, input
}

func TestRunDryRunVerify(t *testing.T) {
	srv, input := verifyTenant(t)
	// Link pair 6 beforehand, as an earlier run would have.
	pre := newTestRunner(t, srv, DefaultConfig())
	runAndCollect(t, pre, "primary_user_id,secondary_user_id\nauth0|p5,github|s5\n")
	before := srv.Stats().Posts

	cfg := DefaultConfig()
	cfg.DryRun, cfg.Verify = true, true
	got, sum := runAndCollect(t, newTestRunner(t, srv, cfg), input)
	tests := []struct {
		line    int
		status  Status
		warning string
		errPart string
	}{
		{2, StatusPlanned, "", ""},
		{3, StatusPlanned, WarnEmailMismatch, ""},
		{4, StatusPlanned, WarnEmailUnverified, ""},
		{5, StatusInvalid, "", "primary_user_id: no such user"},
		{6, StatusAlreadyLinked, "", ""},
		{7, StatusInvalid, "", "secondary_user_id: no such user"},
	}
	for _, tt := range tests {
		r := got[tt.line]
		if r.Status != tt.status || r.Warning != tt.warning || !strings.Contains(r.Error, tt.errPart) {
			t.Errorf("line %d: %+v, want status %s warning %q error containing %q", tt.line, r, tt.status, tt.warning, tt.errPart)
		}
	}
	if posts := srv.Stats().Posts - before; posts != 0 {
		t.Errorf("a dry run with --verify sent %d POSTs", posts)
	}
	if sum.Warnings[WarnEmailMismatch] != 1 || sum.Warnings[WarnEmailUnverified] != 1 {
		t.Errorf("summary warnings = %v", sum.Warnings)
	}
}

func TestRunRequireVerifiedEmail(t *testing.T) {
	srv, input := verifyTenant(t)
	cfg := DefaultConfig()
	cfg.RequireVerifiedEmail = true
	got, _ := runAndCollect(t, newTestRunner(t, srv, cfg), input)
	if r := got[2]; r.Status != StatusLinked {
		t.Errorf("line 2: %+v, want linked", r)
	}
	for _, line := range []int{3, 4} {
		if r := got[line]; r.Status != StatusInvalid || !strings.Contains(r.Error, "--require-verified-email") {
			t.Errorf("line %d: %+v, want invalid by --require-verified-email", line, r)
		}
	}
	for _, sec := range []string{"github|s2", "github|s3"} {
		if _, linked := srv.LinkedTo(sec); linked {
			t.Errorf("%s was linked despite --require-verified-email", sec)
		}
	}
	if posts := srv.Stats().PostsByPrimary; posts["auth0|p2"] != 0 || posts["auth0|p3"] != 0 {
		t.Errorf("refused pairs were sent: %v", posts)
	}
}

func TestRunHooks(t *testing.T) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	srv.Seed("auth0|a", "github|a", "auth0|b", "github|b")
	input := "primary_user_id,secondary_user_id\nauth0|a,github|a\nauth0|b,github|b\nauth0|c,\n"
	r := newTestRunner(t, srv, DefaultConfig())
	var mu sync.Mutex
	var planRows, planTodo, results, active, maxActive int
	attempts := map[string]int{}
	r.Hooks = Hooks{
		Plan:   func(rows, todo int) { planRows, planTodo = rows, todo },
		Result: func(Result) { results++ },
		Attempt: func(a Attempt) {
			mu.Lock()
			attempts[a.Kind+" "+http201(a.Status)]++
			mu.Unlock()
		},
		Active: func(d int) {
			mu.Lock()
			active += d
			maxActive = max(maxActive, active)
			mu.Unlock()
		},
	}
	r.Done = &LineSet{}
	r.Done.Add(4) // a resumed run: line 4 is already final
	runAndCollect(t, r, input)
	if planRows != 3 || planTodo != 2 {
		t.Errorf("Plan(%d, %d), want (3, 2)", planRows, planTodo)
	}
	if results != 2 || attempts["link 201"] != 2 || active != 0 || maxActive < 1 {
		t.Errorf("results %d, attempts %v, active %d (max %d)", results, attempts, active, maxActive)
	}
}

func http201(status int) string {
	if status == 201 {
		return "201"
	}
	return "other"
}

// TestRunAmbiguousWithoutReadScope: a pair linked by an earlier run answers
// 409; the token cannot read users, so the row is failed with a hint, not
// retried by a resume, and the warning is logged once.
func TestRunAmbiguousWithoutReadScope(t *testing.T) {
	srv := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(srv.Close)
	srv.Seed("auth0|p1", "github|s1", "auth0|p2", "github|s2")
	input := "primary_user_id,secondary_user_id\nauth0|p1,github|s1\nauth0|p2,github|s2\n"
	runAndCollect(t, newTestRunner(t, srv, DefaultConfig()), input) // links both

	r := newTestRunner(t, srv, DefaultConfig())
	base, _ := linker.ParseDomain(srv.URL)
	var err error
	r.Client, err = linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour, "update:users")), linker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	r.Log = zap.New(core)
	got, _ := runAndCollect(t, r, input)
	for _, line := range []int{2, 3} {
		res := got[line]
		if res.Status != StatusFailed || res.Retryable || !strings.Contains(res.Error, "read:users") {
			t.Errorf("line %d: %+v, want failed, not retryable, naming read:users", line, res)
		}
	}
	if n := logs.FilterMessageSnippet("read:users").Len(); n != 1 {
		t.Errorf("the missing scope was logged %d times, want once", n)
	}
}

func TestRunDryRunRequireVerifiedEmail(t *testing.T) {
	srv, input := verifyTenant(t)
	cfg := DefaultConfig()
	cfg.DryRun, cfg.RequireVerifiedEmail = true, true // without Verify
	got, _ := runAndCollect(t, newTestRunner(t, srv, cfg), input)
	if r := got[2]; r.Status != StatusPlanned {
		t.Errorf("line 2: %+v, want planned", r)
	}
	for _, line := range []int{3, 4} {
		if r := got[line]; r.Status != StatusInvalid || !strings.Contains(r.Error, "--require-verified-email") {
			t.Errorf("line %d: %+v, want refused by --require-verified-email", line, r)
		}
	}
	if st := srv.Stats(); st.Posts != 0 || st.Gets == 0 {
		t.Errorf("dry run sent %d POSTs and %d GETs; want none and some", st.Posts, st.Gets)
	}
}

// TestRunVerifyEmailsStayOutOfFiles: a row with an email warning carries
// the two users' emails to Hooks.Result (for the report), but neither the
// results file nor the log holds them.
func TestRunVerifyEmailsStayOutOfFiles(t *testing.T) {
	srv, input := verifyTenant(t)
	cfg := DefaultConfig()
	cfg.DryRun, cfg.Verify = true, true
	r := newTestRunner(t, srv, cfg)
	var logBuf bytes.Buffer
	r.Log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logBuf), zapcore.DebugLevel))
	hooked := map[int]Result{}
	r.Hooks.Result = func(res Result) { hooked[res.Line] = res }
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), opener(input), w); err != nil {
		t.Fatal(err)
	}
	if got := hooked[3]; got.PrimaryEmail != "bob@example.com" || got.SecondaryEmail != "robert@example.org" {
		t.Errorf("line 3 emails = %q, %q; want bob@example.com, robert@example.org", got.PrimaryEmail, got.SecondaryEmail)
	}
	if got := hooked[4]; got.PrimaryEmail != "cy@example.com" || got.SecondaryEmail != "cy@example.com" {
		t.Errorf("line 4 emails = %q, %q", got.PrimaryEmail, got.SecondaryEmail)
	}
	if got := hooked[2]; got.PrimaryEmail != "" || got.SecondaryEmail != "" {
		t.Errorf("line 2 has no warning but carries emails %q, %q", got.PrimaryEmail, got.SecondaryEmail)
	}
	for name, text := range map[string]string{"results file": buf.String(), "log": logBuf.String()} {
		for _, email := range []string{"bob@", "robert@", "cy@"} {
			if strings.Contains(strings.ToLower(text), email) {
				t.Errorf("the %s holds %s…:\n%s", name, email, text)
			}
		}
	}
}
