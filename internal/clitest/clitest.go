// Package clitest holds what the end-to-end tests of the linkbatch command
// share: the binary built once for a test binary, generated input pairs, a
// fake tenant seeded with them, and a results file read back by line. It
// knows the command only from outside (its package path and the files it
// reads and writes), never its code, so that the tests run it as a user
// would. It is meant for tests alone.
package clitest

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

// Command is the package path of the linkbatch command.
const Command = "github.com/linkbatch/linkbatch/cmd/linkbatch"

// Main builds the linkbatch command into a temporary directory, sets *bin
// to its path, runs the tests of m and exits with their code, removing the
// directory first. It is meant to be called from TestMain; a failed build
// exits 1 with the compiler's output on stderr.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "linkbatch-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "linkbatch")
	build := exec.Command("go", "build", "-o", *bin, Command)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build linkbatch:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Pair is one row of a generated input.
type Pair struct{ Primary, Secondary string }

// GenPairs returns n valid, conflict-free pairs of assorted providers, their
// ids made unique by prefix.
func GenPairs(prefix string, n int) []Pair {
	secondaries := []string{"google-oauth2|%s%05d", "github|%s%05d", "samlp|acme|%s.%05d@acme.com", "auth0|%s%05dsec", "waad|contoso|%s-%05d"}
	ps := make([]Pair, n)
	for i := range ps {
		ps[i] = Pair{
			Primary:   fmt.Sprintf("auth0|%s%05dpri", prefix, i),
			Secondary: fmt.Sprintf(secondaries[i%len(secondaries)], prefix, i),
		}
	}
	return ps
}

// NewTenant starts a fake tenant of cfg seeded with the pairs' users, closed
// when the test ends, and returns it with a token valid for an hour.
func NewTenant(t testing.TB, cfg linkertest.Config, pairs []Pair) (*linkertest.Server, string) {
	t.Helper()
	srv := linkertest.NewServer(cfg)
	t.Cleanup(srv.Close)
	for _, p := range pairs {
		srv.Seed(p.Primary, p.Secondary)
	}
	return srv, srv.IssueToken(time.Hour)
}

// ReadResultFile reads the results file at path and returns its rows by
// line and its text; a missing file gives none and "". It fails the test
// if the file cannot be read or parsed, or a line has two rows.
func ReadResultFile(t testing.TB, path string) (map[int]batch.Result, string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := ResultRows(raw)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(raw)
}

// ResultRows parses the rows of a results file by line. It returns an error
// if the text does not parse or a line has two rows.
func ResultRows(raw []byte) (map[int]batch.Result, error) {
	res := map[int]batch.Result{}
	err := batch.ReadResults(bytes.NewReader(raw), func(r batch.Result) error {
		if prev, dup := res[r.Line]; dup {
			return fmt.Errorf("line %d has two result rows: %+v and %+v", r.Line, prev, r)
		}
		res[r.Line] = r
		return nil
	})
	return res, err
}

// CSVQuote returns s as one CSV field: quoted when it holds a comma, a
// quote or a line break.
func CSVQuote(s string) string {
	if strings.ContainsAny(s, ",\"\n\r") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}
