package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// readInput reads one whole pass of the input.
func readInput(t *testing.T, open func() (io.ReadCloser, error)) ([]byte, error) {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestInputOpenerFindsChanges(t *testing.T) {
	content := bytes.Repeat([]byte("auth0|p1,github|s1\n"), 3*inputBlock/19+7)
	tests := []struct {
		name   string
		change func(path string) error
		// want is how many bytes the second read may pass on.
		want int
	}{
		{"unchanged", func(string) error { return nil }, len(content)},
		{"truncated in the second block", func(p string) error { return os.Truncate(p, inputBlock+100) }, inputBlock},
		{"truncated at a block end", func(p string) error { return os.Truncate(p, 2*inputBlock) }, 2 * inputBlock},
		{"one byte changed in place", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("X"), 2*inputBlock+5)
			return err
		}, 2 * inputBlock},
		{"grown", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("auth0|p2,github|s2\n")
			return err
		}, len(content)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, open := openerOf(t, content)
			if got, err := readInput(t, open); err != nil || !bytes.Equal(got, content) {
				t.Fatalf("first read: %d bytes, error %v", len(got), err)
			}
			if err := tt.change(path); err != nil {
				t.Fatal(err)
			}
			got, err := readInput(t, open)
			if !bytes.Equal(got, content[:len(got)]) || len(got) != tt.want {
				t.Errorf("second read passed on %d bytes (equal to the first: %v), want %d", len(got), bytes.Equal(got, content[:len(got)]), tt.want)
			}
			if wantErr := tt.want != len(content); wantErr != errors.Is(err, errInputChanged) {
				t.Errorf("second read: error %v, want errInputChanged: %v", err, wantErr)
			}
		})
	}
}

// TestInputOpenerConcurrentFirstReads: two first reads that find different
// bytes (the file changed between them) fail the later one.
func TestInputOpenerConcurrentFirstReads(t *testing.T) {
	path, open := openerOf(t, bytes.Repeat([]byte("x"), 2*inputBlock))
	a, _ := open()
	b, _ := open()
	if _, err := io.ReadAll(a); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte("y"), 2*inputBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(b); !errors.Is(err, errInputChanged) {
		t.Errorf("second first read: error %v, want errInputChanged", err)
	}
}

// TestRunInputTruncatedDuringRun cuts the input while the run links it:
// the run stops with exit 3 naming the change, no row at or after the cut
// has a result, and a resume with the input restored links every pair once.
func TestRunInputTruncatedDuringRun(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tt := range []struct {
		name string
		off  int // bytes into the cut line
	}{{"at a line end", 0}, {"mid-line", 10}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pairs := clitest.GenPairs("cut", 8000)
			srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 3, Faults: linkertest.Faults{Latency: 20 * time.Millisecond}}, pairs)
			in := writeInput(t, pairs)
			original, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			const cutLine = 5000 // in the fourth 64 KiB block
			lines := bytes.SplitAfter(original, []byte("\n"))
			cut := len(bytes.Join(lines[:cutLine-1], nil)) + tt.off
			outPath := filepath.Join(t.TempDir(), "results.csv")
			args := []string{"run", "--in", in, "--out", outPath, "--rate", "2000", "--burst", "100", "--workers", "16"}
			p := startBinary(t, invocation{args: args, env: tenantEnv(srv, tok)})
			waitUntil(t, time.Minute, p, "a result row", func() bool { return rowsWritten(outPath) > 0 })
			if err := os.Truncate(in, int64(cut)); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t, time.Minute); code != exitAborted {
				t.Fatalf("exit %d, want %d\n%s", code, exitAborted, p.stderr)
			}
			stderr := p.stderr.String()
			if !strings.Contains(stderr, "the input changed during the run") || !strings.Contains(stderr, "restore it") {
				t.Errorf("stderr does not say the input changed:\n%s", lastLines(stderr, 5))
			}
			res := checkWellFormed(t, outPath)
			for line := range res {
				if line >= cutLine {
					t.Errorf("line %d has a result; the input was cut at line %d", line, cutLine)
				}
			}
			if len(res) == 0 || len(res) >= cutLine-1 {
				t.Errorf("%d result rows, want some, fewer than the %d rows before the cut", len(res), cutLine-1)
			}

			if err := os.WriteFile(in, original, 0o600); err != nil {
				t.Fatal(err)
			}
			resumeToEnd(t, srv, tok, args, pairs)
		})
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// TestInputOpenerReadsAlongTheFirst: a read opened after the first and
// going faster waits for the first to record each block before it passes
// it on; a first read closed early hands the recording on to a read
// still going, and a read opened after the recording is whole checks
// against it.
func TestInputOpenerReadsAlongTheFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		content := bytes.Repeat([]byte("auth0|p1,github|s1\n"), 3*inputBlock/19+7) // 4 blocks
		path, open := openerOf(t, content)
		first, _ := open()
		second, _ := open()
		var passed atomic.Int64
		done := make(chan error)
		go func() {
			_, err := io.Copy(writerFunc(func(p []byte) (int, error) {
				passed.Add(int64(len(p)))
				return len(p), nil
			}), second)
			done <- err
		}()
		synctest.Wait()
		if n := passed.Load(); n != 0 {
			t.Fatalf("the second read passed on %d bytes before the first read recorded any", n)
		}
		if _, err := io.ReadFull(first, make([]byte, inputBlock+1)); err != nil { // two blocks
			t.Fatal(err)
		}
		synctest.Wait()
		if n := passed.Load(); n != 2*inputBlock {
			t.Fatalf("the second read passed on %d bytes once two blocks were recorded, want %d", n, 2*inputBlock)
		}
		if err := first.Close(); err != nil { // the second read records the rest
			t.Fatal(err)
		}
		if err := <-done; err != nil || passed.Load() != int64(len(content)) {
			t.Fatalf("second read: %d bytes, error %v; want %d", passed.Load(), err, len(content))
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("X"), 3*inputBlock+5); err != nil { // in the last block, which the second read recorded
			t.Fatal(err)
		}
		if got, err := readInput(t, open); !errors.Is(err, errInputChanged) || len(got) != 3*inputBlock {
			t.Errorf("third read: %d bytes, error %v; want %d and errInputChanged", len(got), err, 3*inputBlock)
		}
	})
}

// writerFunc is a function that is an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// openerOf writes content to a file of the test's and returns its path and
// the inputOpener of it, cleaned up when the test ends.
func openerOf(t *testing.T, content []byte) (string, func() (io.ReadCloser, error)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	open, cleanup, err := inputOpener(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return path, open
}
