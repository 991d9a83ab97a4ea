//go:build unix

package batch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestOpenResultsNewThenResume: a new results file gets a sidecar; a second
// run refuses to overwrite it without --resume, and refuses to resume it for
// another input or mode; a resume keeps its final rows.
func TestOpenResultsNewThenResume(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.csv")
	o := ResultsOptions{Out: out}
	res, err := OpenResults(o, "aaaa")
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != nil {
		t.Errorf("a new file has final lines: %v", res.Done)
	}
	if err := res.Writer.Write(Result{Line: 2, Primary: "auth0|a", Secondary: "github|b", Status: StatusLinked}); err != nil {
		t.Fatal(err)
	}
	if err := res.Writer.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := ReadRunInfo(SidecarPath(out)); err != nil || info.Input != "aaaa" || info.DryRun {
		t.Fatalf("sidecar = %+v, %v", info, err)
	}

	var ue *UsageError
	if err := o.CheckOverwrite(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "add --resume") {
		t.Errorf("CheckOverwrite without resume = %v, want a *UsageError naming --resume", err)
	}
	if _, err := OpenResults(o, "aaaa"); !errors.As(err, &ue) {
		t.Errorf("OpenResults without resume = %v, want a *UsageError", err)
	}
	o.Resume = true
	if err := o.CheckOverwrite(); err != nil {
		t.Errorf("CheckOverwrite with resume = %v", err)
	}
	for _, tt := range []struct {
		name        string
		fingerprint string
		dryRun      bool
		want        string
	}{
		{"other input", "bbbb", false, "different input"},
		{"other mode", "aaaa", true, "a dry run"},
	} {
		o := o
		o.DryRun = tt.dryRun
		if _, err := OpenResults(o, tt.fingerprint); !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot resume") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: OpenResults = %v, want a *UsageError saying %q", tt.name, err, tt.want)
		}
	}
	res, err = OpenResults(o, "aaaa")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if !res.Done.Has(2) || res.Done.Len() != 1 || res.Kept.Kept != 1 {
		t.Errorf("resumed: done %v, kept %+v; want line 2 kept", res.Done, res.Kept)
	}
}

// TestOpenResultsStream: standard output gets a header and no sidecar.
func TestOpenResultsStream(t *testing.T) {
	dir := t.TempDir()
	var stdout bytes.Buffer
	res, err := OpenResults(ResultsOptions{Out: "-", Stream: true, Stdout: &stdout}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Writer.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "line,") {
		t.Errorf("stdout = %q, want the header", stdout.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created: %v", entries)
	}
}

// TestClaimResultsLocks: a second claim of one results file fails with a
// *UsageError naming the holder's pid, under another spelling too, until
// the first is released.
func TestClaimResultsLocks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "results.csv")
	first, err := ClaimResults(ResultsOptions{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	var ue *UsageError
	for _, name := range []string{out, filepath.Join(dir, ".", "results.csv")} {
		_, err := ClaimResults(ResultsOptions{Out: name})
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
			t.Errorf("second claim of %s = %v, want a *UsageError naming pid %d", name, err, os.Getpid())
		}
	}
	first.Release()
	if _, err := os.Stat(LockPath(out)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left after release: %v", err)
	}
	again, err := ClaimResults(ResultsOptions{Out: out})
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again.Release()
	if l, err := ClaimResults(ResultsOptions{Out: "-", Stream: true}); l != nil || err != nil {
		t.Errorf("claim of a stream = %v, %v; want nothing held", l, err)
	}
}

// TestClaimResultsRemovesStaleTemps: the temporary files of a killed
// rewrite of the results file or its sidecar are removed, nothing else.
func TestClaimResultsRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "results.csv")
	stale := []string{".results.csv.tmp-123", ".results.csv.run.json.tmp-9"}
	kept := []string{".results.csv.tmp-x", ".other.csv.tmp-1", "results.csv.tmp-1"}
	for _, name := range append(append([]string{}, stale...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("auth0|x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := ClaimResults(ResultsOptions{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed", name)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s removed: %v", name, err)
		}
	}
}

func TestIsStreamOut(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "r.csv")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		out     string
		want    bool
		wantErr bool
	}{
		{"-", true, false},
		{"/dev/stdout", true, false},
		{"/dev/fd/1", true, false},
		{"/dev/null", true, false},
		{regular, false, false},
		{filepath.Join(dir, "new.csv"), false, false},
		{dir, false, true},
		{"/dev/no-such-device", false, true},
	}
	for _, tt := range tests {
		got, err := IsStreamOut(tt.out)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("IsStreamOut(%q) = %v, %v; want %v, error %v", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestSyncAhead checks that a results file is synced while it is written,
// before it is closed, and that a sync that failed then fails the close:
// the sync at the close need not report it again.
func TestSyncAhead(t *testing.T) {
	tests := []struct {
		name    string
		syncErr error
	}{
		{"syncs succeed", nil},
		{"a sync fails", errors.New("disk gone")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "results.csv")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			synced := make(chan int64, 16) // the file's size at each sync
			s := newSyncAhead(f, func() error {
				st, err := f.Stat()
				if err != nil {
					return err
				}
				synced <- st.Size()
				return tt.syncErr
			})
			written := 0
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for written < 3*syncAheadBytes {
				if _, err := s.Write(chunk); err != nil {
					t.Fatal(err)
				}
				written += len(chunk)
				if written == syncAheadBytes+len(chunk) {
					select {
					case at := <-synced:
						if at < syncAheadBytes {
							t.Fatalf("synced at %d bytes, before %d were written", at, syncAheadBytes)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("no sync after the first syncAheadBytes")
					}
				}
			}
			err = s.close()
			if got := errors.Is(err, tt.syncErr); tt.syncErr != nil && !got {
				t.Fatalf("close() = %v, want the sync's error %v", err, tt.syncErr)
			}
			if tt.syncErr == nil && err != nil {
				t.Fatalf("close() = %v", err)
			}
			if st, err := os.Stat(path); err != nil || st.Size() != int64(written) {
				t.Fatalf("file holds %v bytes (%v), want %d", st.Size(), err, written)
			}
		})
	}
}

// TestOpenResultsLater checks that a new results file gets nothing before
// its sidecar, which is written once the fingerprint is known: the rows
// written meanwhile wait in memory, and a writer past heldBytes waits for
// the sidecar; that a fingerprint that fails fails the writes and the
// close, and leaves the file empty without a sidecar; and that a file to
// resume waits for the fingerprint before it opens.
func TestOpenResultsLater(t *testing.T) {
	res := Result{Line: 2, Primary: "auth0|a", Secondary: "github|b", Status: StatusPlanned}
	t.Run("sidecar first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "results.csv")
			known := make(chan struct{})
			r, err := OpenResultsLater(ResultsOptions{Out: out, DryRun: true}, func() (string, error) {
				<-known
				return "aaaa", nil
			})
			if err != nil {
				t.Fatal(err)
			}
			written := make(chan int) // rows, once written
			go func() {
				n := 0
				for range heldBytes/32 + 1 { // past heldBytes: a row takes 42
					if err := r.Writer.Append(res); err != nil {
						t.Error(err)
						break
					}
					n++
				}
				written <- n
			}()
			synctest.Wait()
			select {
			case n := <-written:
				close(known)
				_ = r.Close()
				t.Fatalf("%d rows written past heldBytes before the fingerprint was known", n)
			default:
			}
			if n, err := fileSize(out); n != 0 || err != nil {
				t.Errorf("results file before its sidecar: %d bytes (%v), want none", n, err)
			}
			if _, err := os.Stat(SidecarPath(out)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sidecar before the fingerprint: %v", err)
			}
			close(known)
			n := <-written
			if err := r.Writer.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if info, err := ReadRunInfo(SidecarPath(out)); err != nil || info.Input != "aaaa" || !info.DryRun {
				t.Fatalf("sidecar = %+v, %v", info, err)
			}
			rows := 0
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := ReadResults(f, func(got Result) error {
				if rows++; got.Line != res.Line || got.Status != res.Status {
					return fmt.Errorf("row %d: %+v", rows, got)
				}
				return nil
			}); err != nil || rows != n {
				t.Fatalf("results file: %d rows, %v; want %d", rows, err, n)
			}
		})
	})
	t.Run("fingerprint fails", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "results.csv")
		errRead := errors.New("input unreadable")
		r, err := OpenResultsLater(ResultsOptions{Out: out}, func() (string, error) { return "", errRead })
		if err != nil {
			t.Fatal(err)
		}
		for range heldBytes/32 + 1 { // past heldBytes: a row takes 42
			if err = r.Writer.Write(res); err != nil {
				break
			}
		}
		if !errors.Is(err, errRead) {
			t.Errorf("Write() = %v, want the fingerprint's error", err)
		}
		if err := r.Close(); !errors.Is(err, errRead) {
			t.Errorf("Close() = %v, want the fingerprint's error", err)
		}
		if n, err := fileSize(out); n != 0 || err != nil {
			t.Errorf("results file: %d bytes (%v), want none", n, err)
		}
		if _, err := os.Stat(SidecarPath(out)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("sidecar of a run without fingerprint: %v", err)
		}
	})
	t.Run("resume", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "results.csv")
		r, err := OpenResults(ResultsOptions{Out: out}, "aaaa")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Writer.Write(Result{Line: 2, Primary: "auth0|a", Secondary: "github|b", Status: StatusLinked}); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			print string
			err   error
			want  string
		}{
			{"bbbb", nil, "different input"},
			{"", errors.New("input unreadable"), "input unreadable"},
		} {
			_, err := OpenResultsLater(ResultsOptions{Out: out, Resume: true}, func() (string, error) { return tt.print, tt.err })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenResultsLater(fingerprint %q, %v) = %v, want an error saying %q", tt.print, tt.err, err, tt.want)
			}
		}
		r, err = OpenResultsLater(ResultsOptions{Out: out, Resume: true}, func() (string, error) { return "aaaa", nil })
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !r.Done.Has(2) {
			t.Errorf("resumed: done %v, want line 2", r.Done)
		}
	})
}

// fileSize returns the size of the file at path.
func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
