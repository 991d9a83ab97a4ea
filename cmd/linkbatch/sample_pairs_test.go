package main

import (
	"path/filepath"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
)

// TestSamplePairs: the README's first command, on samples/pairs.csv, links
// every row and ends 0; samples/pairs-with-mistakes.csv shows each kind of
// mistake and ends 1.
func TestSamplePairs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits on the simulated tenant's rate limit")
	}
	dir := t.TempDir()
	res := runLinkbatch(t, invocation{args: []string{"run", "--simulate", "--in", filepath.Join("..", "..", "samples", "pairs.csv"), "--out", filepath.Join(dir, "a.csv")}})
	if res.code != exitOK || len(res.results) != 19 {
		t.Fatalf("samples/pairs.csv: exit %d, %d results; want 0 and 19\n%s", res.code, len(res.results), res.stderr)
	}
	for line, r := range res.results {
		if r.Status != batch.StatusLinked {
			t.Errorf("samples/pairs.csv line %d: %s %s", line, r.Status, r.Error)
		}
	}
	res = runLinkbatch(t, invocation{args: []string{"run", "--simulate", "--in", filepath.Join("..", "..", "samples", "pairs-with-mistakes.csv"), "--out", filepath.Join(dir, "b.csv")}})
	if res.code != exitProblems {
		t.Fatalf("samples/pairs-with-mistakes.csv: exit %d, want %d\n%s", res.code, exitProblems, res.stderr)
	}
	want := map[int]batch.Status{2: batch.StatusLinked, 3: batch.StatusLinked, 4: batch.StatusInvalid, 5: batch.StatusInvalid, 6: batch.StatusInvalid,
		7: batch.StatusInvalid, 8: batch.StatusSkipped, 9: batch.StatusInvalid, 10: batch.StatusInvalid}
	for line, status := range want {
		if got := res.results[line].Status; got != status {
			t.Errorf("samples/pairs-with-mistakes.csv line %d: %s, want %s", line, got, status)
		}
	}
}
