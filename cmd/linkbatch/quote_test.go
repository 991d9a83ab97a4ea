package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// TestRunUnclosedQuoteKeepsTheRest: an unclosed quote on line 2 of a
// 1,000-row file refuses that row, naming its line, and every other pair is
// processed, in a dry run and a real one; the summary counts every row.
func TestRunUnclosedQuoteKeepsTheRest(t *testing.T) {
	t.Parallel()
	pairs := clitest.GenPairs("quote", 1000)
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	fmt.Fprintf(&b, "%s,\"%s\n", pairs[0].Primary, pairs[0].Secondary)
	for _, p := range pairs[1:] {
		fmt.Fprintf(&b, "%s,%s\n", p.Primary, p.Secondary)
	}
	in := filepath.Join(t.TempDir(), "pairs.csv")
	if err := os.WriteFile(in, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	for _, tt := range []struct {
		name string
		args []string
		want batch.Status
	}{
		{"dry run", []string{"--dry-run"}, batch.StatusPlanned},
		{"real run", []string{"--rate", "1000", "--burst", "100"}, batch.StatusLinked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			outPath := filepath.Join(t.TempDir(), "results.csv")
			out := runLinkbatch(t, invocation{args: append([]string{"run", "--in", in, "--out", outPath}, tt.args...), env: tenantEnv(srv, tok)})
			if out.code != exitProblems {
				t.Fatalf("exit %d, want %d\n%s", out.code, exitProblems, lastLines(out.stderr, 3))
			}
			if got := summaryInt(t, out.stderr, "rows"); got != 1000 {
				t.Errorf("summary rows = %d, want 1000", got)
			}
			if r := out.results[2]; r.Status != batch.StatusInvalid || !strings.Contains(r.Error, "line 2, column 21: quote opened here does not close") {
				t.Errorf("line 2: %s %q, want invalid naming the quote on line 2", r.Status, r.Error)
			}
			if len(out.results) != 1000 {
				t.Errorf("%d result rows, want 1000", len(out.results))
			}
			for line := 3; line <= 1001; line++ {
				if r := out.results[line]; r.Status != tt.want {
					t.Fatalf("line %d: %s %q, want %s", line, r.Status, r.Error, tt.want)
				}
			}
		})
	}
}
