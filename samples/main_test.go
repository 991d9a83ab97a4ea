//go:build unix

package samples_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// binPath is the linkbatch binary built once for these tests, which run it
// as the samples do.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "linkbatch-samples-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "linkbatch")
	build := exec.Command("go", "build", "-o", binPath, "github.com/linkbatch/linkbatch/cmd/linkbatch")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build linkbatch:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// The exit codes of linkbatch, documented in README.md.
const (
	exitOK       = 0
	exitProblems = 1
	exitUsage    = 2
	exitAborted  = 3
)

// The environment variables linkbatch reads.
const (
	envDomain       = "AUTH0_DOMAIN"
	envToken        = "AUTH0_TOKEN"
	envClientID     = "AUTH0_CLIENT_ID"
	envClientSecret = "AUTH0_CLIENT_SECRET"
	envAudience     = "AUTH0_AUDIENCE"
)

// runFlags is what the checks need of a parsed 'linkbatch run' command
// line.
type runFlags struct {
	Grace time.Duration
}

// linkbatchOutput runs the binary with args and env alone (and PATH) and
// returns its exit code and its standard output and error.
func linkbatchOutput(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binPath, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("run linkbatch: %v", err)
	return 0, ""
}

// pair is one row of a generated input.
type pair struct{ primary, secondary string }

// genPairs returns n valid, conflict-free pairs of assorted providers.
func genPairs(prefix string, n int) []pair {
	secondaries := []string{"google-oauth2|%s%05d", "github|%s%05d", "samlp|acme|%s.%05d@acme.com", "auth0|%s%05dsec", "waad|contoso|%s-%05d"}
	ps := make([]pair, n)
	for i := range ps {
		ps[i] = pair{
			primary:   fmt.Sprintf("auth0|%s%05dpri", prefix, i),
			secondary: fmt.Sprintf(secondaries[i%len(secondaries)], prefix, i),
		}
	}
	return ps
}

// newTenant starts a fake tenant seeded with the pairs' users and returns
// it with a static token.
func newTenant(t *testing.T, cfg linkertest.Config, pairs []pair) (*linkertest.Server, string) {
	t.Helper()
	srv := linkertest.NewServer(cfg)
	t.Cleanup(srv.Close)
	for _, p := range pairs {
		srv.Seed(p.primary, p.secondary)
	}
	return srv, srv.IssueToken(time.Hour)
}

// readResultFile reads a results file and fails the test if a line has two
// rows.
func readResultFile(t *testing.T, path string) (map[int]batch.Result, string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	res := map[int]batch.Result{}
	err = batch.ReadResults(bytes.NewReader(raw), func(r batch.Result) error {
		if prev, dup := res[r.Line]; dup {
			return fmt.Errorf("line %d has two result rows: %+v and %+v", r.Line, prev, r)
		}
		res[r.Line] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, string(raw)
}

func csvQuote(s string) string {
	if strings.ContainsAny(s, ",\"\n\r") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}
