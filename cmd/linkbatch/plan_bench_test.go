package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/internal/export"
	"github.com/linkbatch/linkbatch/internal/pairing"
)

// benchUsers is the size of the export BenchmarkPlanExport plans.
const benchUsers = 1_000_000

// writeBenchExport writes a gzipped NDJSON export of n users: in every ten,
// four share an email (a group of four, in mixed case) and six have their
// own; one user in twenty has an unverified email. It returns the number of
// distinct emails.
func writeBenchExport(tb testing.TB, path string, n int) int {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := bufio.NewWriterSize(zw, 1<<20)
	base := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	emails := 0
	var line []byte
	for i := range n {
		var email string
		if i%10 < 4 {
			email = "group" + strconv.Itoa(i/10) + "@Example.com"
			if i%10 == 1 {
				email = " GROUP" + strconv.Itoa(i/10) + "@example.com"
			}
			if i%10 == 0 {
				emails++
			}
		} else {
			email = "solo" + strconv.Itoa(i) + "@example.com"
			emails++
		}
		id := fmt.Sprintf("%024x", i)
		line = line[:0]
		line = append(line, `{"user_id":"auth0|`...)
		line = append(line, id...)
		line = append(line, `","email":"`...)
		line = append(line, email...)
		line = append(line, `","email_verified":`...)
		line = strconv.AppendBool(line, i%20 != 7)
		line = append(line, `,"created_at":"`...)
		line = base.Add(time.Duration(i*7919%1_000_003)*time.Minute).AppendFormat(line, "2006-01-02T15:04:05.000Z")
		line = append(line, `","updated_at":"2024-06-01T00:00:00.000Z","name":"User `...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, `","logins_count":`...)
		line = strconv.AppendInt(line, int64(i%97), 10)
		line = append(line, `,"identities":[{"provider":"auth0","user_id":"`...)
		line = append(line, id...)
		line = append(line, `","connection":"Username-Password-Authentication","isSocial":false}],"user_metadata":{"theme":"dark","lang":"en"}}`+"\n"...)
		if _, err := w.Write(line); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return emails
}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPlanExport plans a generated export of 1,000,000 users with the
// plan command (both passes, the pairs file and the report) and reports
// ns/user (elapsed) and cpu-ns/user (CPU time of the process). It then measures the heap that the first pass keeps, per
// distinct email: bytes/email.
func BenchmarkPlanExport(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "users.json.gz")
	emails := writeBenchExport(b, in, benchUsers)
	out := filepath.Join(dir, "pairs.csv")
	args := []string{"--from-export", in, "--out", out, "--report", filepath.Join(dir, "plan.html"), "--force"}
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		if err := planCommand(context.Background(), args, io.Discard, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchUsers, "ns/user")
	// CPU time too: on a shared machine the elapsed time says more about
	// the other processes than about the plan.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N)/benchUsers, "cpu-ns/user")

	// Memory kept by the first pass, per distinct email.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := pairing.NewPlanner(withIDCheck(pairing.DefaultConfig()))
	if _, err := readExport(context.Background(), in, func(u export.User) { p.Add(toPairingUser(u)) }, func(*export.LineError) {}); err != nil {
		b.Fatal(err)
	}
	p.Decide()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c := p.Counts(); c.Emails != emails {
		b.Fatalf("%d emails planned, want %d", c.Emails, emails)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(emails), "bytes/email")
	runtime.KeepAlive(p)
}
