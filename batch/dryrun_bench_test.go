package batch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// writeBenchInput writes n valid, conflict-free rows to a file and returns
// its path.
func writeBenchInput(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "in.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufioWriter(f)
	fmt.Fprintln(w, "primary_user_id,secondary_user_id")
	secondaries := []string{"google-oauth2|1077%012d", "github|%d", "samlp|acme|user%d@acme.com", "auth0|sec%024d"}
	for i := range n {
		fmt.Fprintf(w, "auth0|64b0%020d,"+secondaries[i%len(secondaries)]+"\n", i, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkDryRun measures the local cost of a dry run: its one pass over
// the input (see Config.OnePass), the results file and the JSON log at info
// level (which has no line for a row settled without a request). It reports
// ns/row, the heap in use at the end of the pass per row, and the conflict
// index's bytes per row.
func BenchmarkDryRun(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			if testing.Short() && n > 100_000 {
				b.Skip("short mode")
			}
			in := writeBenchInput(b, n)
			open := func() (io.ReadCloser, error) { return os.Open(in) }
			enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
			log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
			var peak uint64
			var index float64
			b.ResetTimer()
			for range b.N {
				out, err := os.Create(filepath.Join(b.TempDir(), "out.csv"))
				if err != nil {
					b.Fatal(err)
				}
				w, err := NewResultWriter(out, true)
				if err != nil {
					b.Fatal(err)
				}
				r := &Runner{Config: DefaultConfig(), Log: log}
				r.Config.DryRun = true
				r.Hooks.Plan = func(int, int) { // at the end of the pass
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
				sum, err := r.Run(context.Background(), open, w)
				if err != nil {
					b.Fatal(err)
				}
				if sum.Counts[StatusPlanned] != n {
					b.Fatalf("planned %d of %d", sum.Counts[StatusPlanned], n)
				}
				index = float64(sum.IndexBytes) / float64(sum.Rows)
				_ = out.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/row")
			b.ReportMetric(float64(peak)/float64(n), "heap-bytes/row")
			b.ReportMetric(index, "index-bytes/row")
		})
	}
}

func bufioWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<16) }
