package batch

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// benchTableEnv names the file BenchmarkPacing appends its Markdown table
// to; unset, no table is written.
const benchTableEnv = "LINKBATCH_BENCH_TABLE"

// benchTableRow is one scenario's line of the Markdown table.
type benchTableRow struct {
	scenario    string
	rows        int
	runs        int
	floor       time.Duration
	makespan    time.Duration // the mean over the runs
	worst       time.Duration // the longest run
	rateLimited float64       // 429 answers per request
	reqPerRow   float64
	failed      float64
	// Of runs of separate processes: the spread of their finish times
	// and the CPU seconds they used per 1,000 rows.
	spread, cpuPer1000 float64
	processes          bool
}

// appendBenchTable appends rows, under a header, to the file named by
// LINKBATCH_BENCH_TABLE, when it is set.
func appendBenchTable(b *testing.B, rows []benchTableRow) {
	b.Helper()
	path := os.Getenv(benchTableEnv)
	if path == "" || len(rows) == 0 {
		return
	}
	var sb strings.Builder
	if rows[0].processes {
		sb.WriteString("| scenario | rows | runs | floor s | makespan s | makespan/floor | worst run | 429/req | failed | finish spread | CPU s per 1,000 rows |\n")
		sb.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	} else {
		sb.WriteString("| scenario | rows | runs | floor s | makespan s | makespan/floor | worst run | 429/req | req/row | failed |\n")
		sb.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	}
	for _, r := range rows {
		if r.processes {
			fmt.Fprintf(&sb, "| %s | %d | %d | %.2f | %.2f | %.3f | %.3f | %.4f | %g | %.3f | %.3f |\n",
				r.scenario, r.rows, r.runs, r.floor.Seconds(), r.makespan.Seconds(),
				r.makespan.Seconds()/r.floor.Seconds(), r.worst.Seconds()/r.floor.Seconds(),
				r.rateLimited, r.failed, r.spread, r.cpuPer1000)
			continue
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %.2f | %.2f | %.3f | %.3f | %.4f | %.3f | %g |\n",
			r.scenario, r.rows, r.runs, r.floor.Seconds(), r.makespan.Seconds(),
			r.makespan.Seconds()/r.floor.Seconds(), r.worst.Seconds()/r.floor.Seconds(),
			r.rateLimited, r.reqPerRow, r.failed)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		b.Errorf("bench table: %v", err)
		return
	}
	if _, err := f.WriteString(sb.String()); err != nil {
		b.Errorf("bench table: %v", err)
	}
	if err := f.Close(); err != nil {
		b.Errorf("bench table: %v", err)
	}
}
