//go:build unix

package samples_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/internal/clitest"
)

// binPath is the linkbatch binary built once for these tests, which run it
// as the samples do.
var binPath string

func TestMain(m *testing.M) { clitest.Main(m, &binPath) }

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
type pair = clitest.Pair
