package batch

import (
	"fmt"
	"io"
	"runtime"
	"testing"
)

// genInput streams a generated input of n rows: each a distinct pair, with
// every 10th row naming its secondary through secondary_provider and every
// 7th carrying a connection_id.
type genInput struct {
	n, i int
	buf  []byte
}

func (g *genInput) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i <= g.n {
		switch {
		case g.i == 0:
			g.buf = append(g.buf, "primary_user_id,secondary_user_id,secondary_provider,connection_id\r\n"...)
		case g.i%10 == 0:
			g.buf = fmt.Appendf(g.buf, "auth0|%024x,%021d,google-oauth2,\r\n", g.i, g.i)
		case g.i%7 == 0:
			g.buf = fmt.Appendf(g.buf, "auth0|%024x,auth0|%024x,,con_Ab12Cd34Ef56Gh78\r\n", g.i, g.i+1<<40)
		default:
			g.buf = fmt.Appendf(g.buf, "auth0|%024x,samlp|acme|user%d@acme.example,,\r\n", g.i, g.i)
		}
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return n, nil
}

func BenchmarkBuildPlan(b *testing.B) {
	const rows = 1_000_000
	var p *Plan
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		var err error
		p, err = BuildPlan(&genInput{n: rows})
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&after)
	}
	if p.Rows() != rows {
		b.Fatalf("Rows() = %d, want %d", p.Rows(), rows)
	}
	b.ReportMetric(float64(p.Bytes())/rows, "index-B/row")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/rows, "alloc-B/row")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
}
