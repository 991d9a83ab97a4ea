package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// dryRunBenchRows is the size of the input BenchmarkDryRunCommand reads.
const dryRunBenchRows = 1_000_000

// BenchmarkDryRunCommand runs 'linkbatch run --dry-run' over 1,000,000
// valid, conflict-free pairs (those of bench/csvcopy -gen), as
// bench/dryrun.sh times the binary: the fingerprint, the one pass, the
// results file and its sidecar, and the JSON log. It reports ns/row
// (elapsed) and cpu-ns/row (CPU time of the process).
func BenchmarkDryRunCommand(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in.csv")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	fmt.Fprintln(w, "primary_user_id,secondary_user_id")
	secondaries := []string{"google-oauth2|1077%012d", "github|%d", "samlp|acme|user%d@acme.com", "auth0|sec%024d"}
	for i := range dryRunBenchRows {
		fmt.Fprintf(w, "auth0|64b0%020d,"+secondaries[i%len(secondaries)]+"\n", i, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.csv")
	args := []string{"run", "--dry-run", "--no-progress", "--in", in, "--out", out}
	getenv := func(string) string { return "" }
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		if err := run(context.Background(), args, nil, io.Discard, io.Discard, getenv, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, p := range []string{out, out + ".run.json"} {
			if err := os.Remove(p); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/dryRunBenchRows, "ns/row")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N)/dryRunBenchRows, "cpu-ns/row")
}
