package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// These tests run the binary on the files it reads and writes: the same
// file under two names, two runs on one results file, a results "file"
// that is a stream or a directory, and what a killed run left behind.

// ran is what one run of the binary in a directory produced.
type ran struct {
	code           int
	stdout, stderr string
}

// runIn runs linkbatch with dir as its working directory, without reading
// any file afterwards (--out may be a stream). stdin is empty.
func runIn(t *testing.T, dir string, env []string, args ...string) ran {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr // pipes
	err := cmd.Run()
	r := ran{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run linkbatch: %v", err)
	}
	return r
}

// snapshot returns every entry of dir with its target (a link) or content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = "-> " + target
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func TestRunRefusesOneFileUnderTwoNames(t *testing.T) {
	pairs := clitest.GenPairs("alias", 3)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // beside in.csv
		args  []string                       // after run --in in.csv
	}{
		{name: "report is ./out", args: []string{"--out", "res.csv", "--report", "./res.csv"}},
		{name: "report is out by absolute path", setup: nil, args: []string{"--out", "res.csv", "--report", "ABS/res.csv"}},
		{name: "report is out through a dangling symlink",
			setup: func(t *testing.T, dir string) { symlink(t, "res.csv", filepath.Join(dir, "report.html")) },
			args:  []string{"--out", "res.csv", "--report", "report.html"}},
		{name: "report is out through a linked directory",
			setup: func(t *testing.T, dir string) { symlink(t, ".", filepath.Join(dir, "here")) },
			args:  []string{"--out", "res.csv", "--report", "here/res.csv"}},
		{name: "report is the sidecar", args: []string{"--out", "res.csv", "--report", "./res.csv.run.json"}},
		{name: "report is the input through a symlink",
			setup: func(t *testing.T, dir string) { symlink(t, "in.csv", filepath.Join(dir, "report.html")) },
			args:  []string{"--out", "res.csv", "--report", "report.html"}},
		{name: "report is a hard link to the input",
			setup: func(t *testing.T, dir string) {
				hardlink(t, filepath.Join(dir, "in.csv"), filepath.Join(dir, "report.html"))
			},
			args: []string{"--out", "res.csv", "--report", "report.html"}},
		{name: "out is a hard link to the input",
			setup: func(t *testing.T, dir string) {
				hardlink(t, filepath.Join(dir, "in.csv"), filepath.Join(dir, "res.csv"))
			},
			args: []string{"--out", "res.csv", "--resume"}},
		{name: "out is ./in", args: []string{"--out", "./in.csv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "in.csv"), []byte(inputOf(pairs)), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			args := []string{"run", "--in", "in.csv"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "ABS", dir))
			}
			before := snapshot(t, dir)
			r := runIn(t, dir, tenantEnv(srv, tok), args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "name the same file") {
				t.Errorf("exit %d, want %d naming the same file\n%s", r.code, exitUsage, r.stderr)
			}
			if after := snapshot(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("files changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("tenant saw %d requests", st.Requests)
	}
}

// inputOf returns the input file of pairs.
func inputOf(pairs []pair) string {
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "%s,%s\n", p.Primary, p.Secondary)
	}
	return b.String()
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func hardlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Link(target, name); err != nil {
		t.Fatal(err)
	}
}

// TestRunSecondRunOnSameOutExits: while a run writes a results file, a
// second run on it, fresh or resumed and however spelled, exits 2 at once
// naming the first one's pid and sends nothing; the first one finishes.
func TestRunSecondRunOnSameOutExits(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pairs := clitest.GenPairs("lock", 200)
	srv, tok := clitest.NewTenant(t, linkertest.Config{Faults: linkertest.Faults{Latency: 40 * time.Millisecond}}, pairs)
	dir := t.TempDir()
	in := writeInput(t, pairs)
	outPath := filepath.Join(dir, "results.csv")
	first := startBinary(t, invocation{
		args: []string{"run", "--in", in, "--out", outPath, "--workers", "2", "--no-progress"},
		env:  tenantEnv(srv, tok),
	})
	waitUntil(t, 30*time.Second, first, "5 result rows", func() bool { return rowsWritten(outPath) >= 5 })
	symlink(t, "results.csv", filepath.Join(dir, "link.csv"))
	hardlink(t, outPath, filepath.Join(dir, "hard.csv"))
	wantPID := fmt.Sprintf("pid %d", first.cmd.Process.Pid)
	for _, out := range []string{"./results.csv", outPath, "link.csv", "hard.csv"} {
		for _, resume := range []bool{false, true} {
			args := []string{"run", "--in", in, "--out", out, "--workers", "2", "--no-progress"}
			if resume {
				args = append(args, "--resume")
			}
			want := wantPID
			if out == "hard.csv" {
				want = "pid unknown" // another name, another lock file: only the results file's own lock tells
			}
			start := time.Now()
			r := runIn(t, dir, tenantEnv(srv, tok), args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "in use by another linkbatch run") || !strings.Contains(r.stderr, want) {
				t.Errorf("second run %v: exit %d, want %d naming %s\n%s", args[3:], r.code, exitUsage, want, r.stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("second run %v took %v to give up", args[3:], d)
			}
		}
	}
	if first.exited() {
		t.Errorf("the first run ended before the second runs were tried; the test proves nothing\n%s", first.stderr)
	}
	if code := first.wait(t, time.Minute); code != exitOK {
		t.Fatalf("first run: exit %d, want 0\n%s", code, first.stderr)
	}
	if _, err := os.Lstat(outPath + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file is left after the run (%v)", err)
	}
	res := checkWellFormed(t, outPath)
	checkAllLinked(t, srv, pairs, outcome{results: res})
	if len(res) != len(pairs) {
		t.Errorf("%d result rows for %d input rows", len(res), len(pairs))
	}
	if st := srv.Stats(); st.Posts != len(pairs) {
		t.Errorf("tenant saw %d POSTs for %d pairs", st.Posts, len(pairs))
	}
	// Once it ended, the same results file is free again; a resume of a
	// finished file keeps it as it is and sends nothing.
	r := runIn(t, dir, tenantEnv(srv, tok), "run", "--in", in, "--out", "results.csv", "--resume", "--no-progress")
	if r.code != exitOK {
		t.Errorf("resume after the first run: exit %d, want 0\n%s", r.code, r.stderr)
	}
	if st := srv.Stats(); st.Posts != len(pairs) {
		t.Errorf("tenant saw %d POSTs for %d pairs after the resume", st.Posts, len(pairs))
	}
}

// TestRunOutStream: results written to a stream (standard output, a pipe,
// /dev/null) need no sidecar, no lock file and no sync, and cannot be
// resumed; a directory is named as one.
func TestRunOutStream(t *testing.T) {
	pairs := clitest.GenPairs("stream", 4)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	in := writeInput(t, pairs)
	bad := writeInput(t, pairs[:1], "auth0|z,myspace|1")
	// A failing run would create these in /dev; remove them if it did.
	for _, dev := range []string{"/dev/stdout", "/dev/null", "/dev/stdot"} {
		for _, p := range []string{dev, batch.SidecarPath(dev), dev + ".lock"} {
			if dev != "/dev/stdot" && p == dev {
				continue
			}
			if _, err := os.Lstat(p); err == nil {
				t.Fatalf("%s exists before the test", p)
			}
			t.Cleanup(func() {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was created", p)
					_ = os.Remove(p)
				}
			})
		}
	}

	t.Run("/dev/stdout is a pipe", func(t *testing.T) {
		r := runIn(t, t.TempDir(), tenantEnv(srv, tok), "run", "--in", in, "--out", "/dev/stdout", "--no-progress")
		if r.code != exitOK {
			t.Fatalf("exit %d, want 0\n%s", r.code, r.stderr)
		}
		res, err := clitest.ResultRows([]byte(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		checkAllLinked(t, srv, pairs, outcome{results: res})
	})
	t.Run("/dev/null", func(t *testing.T) {
		r := runIn(t, t.TempDir(), nil, "run", "--in", bad, "--out", "/dev/null", "--dry-run", "--no-progress")
		if r.code != exitProblems || !strings.Contains(r.stderr, "1 invalid") {
			t.Errorf("exit %d, want %d with 1 invalid\n%s", r.code, exitProblems, r.stderr)
		}
	})
	t.Run("named pipe", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "results.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		read := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo) // waits for the writer
			if err != nil {
				read <- nil
				return
			}
			var b bytes.Buffer
			_, _ = b.ReadFrom(f)
			_ = f.Close()
			read <- b.Bytes()
		}()
		r := runIn(t, dir, nil, "run", "--in", in, "--out", fifo, "--dry-run", "--no-progress")
		if r.code != exitOK {
			t.Errorf("exit %d, want 0\n%s", r.code, r.stderr)
		}
		var got []byte
		select {
		case got = <-read:
		case <-time.After(10 * time.Second):
			t.Fatal("nothing read from the pipe")
		}
		if res, err := clitest.ResultRows(got); err != nil || len(res) != len(pairs) {
			t.Errorf("%d rows read from the pipe (%v), want %d:\n%s", len(res), err, len(pairs), got)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("files beside the pipe: %v", entries)
		}
	})
	for _, tt := range []struct {
		name, out string
		extra     []string
		want      string
	}{
		{"resume a stream", "/dev/null", []string{"--resume"}, "regular file"},
		{"resume standard output", "-", []string{"--resume"}, "regular file"},
		{"report of a stream", "/dev/stdout", []string{"--report", "r.html"}, "regular file"},
		{"a misspelt device", "/dev/stdot", nil, "no such device"},
		{"a directory", ".", nil, "is a directory"},
		{"a directory by absolute path", "ABS", nil, "is a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"run", "--in", in, "--out", strings.ReplaceAll(tt.out, "ABS", dir), "--dry-run"}, tt.extra...)
			r := runIn(t, dir, nil, args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, want %d saying %q\n%s", r.code, exitUsage, tt.want, r.stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("files created: %v", entries)
			}
		})
	}
}

// TestRunRemovesStaleTemporaryFiles: the temporary files and the lock file
// that a run killed while rewriting the results file or its sidecar left
// are removed by the next run; those of other files are not.
func TestRunRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	in := writeInput(t, clitest.GenPairs("stale", 3))
	if r := runIn(t, dir, nil, "run", "--in", in, "--out", "res.csv", "--dry-run", "--no-progress"); r.code != exitOK {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	stale := []string{".res.csv.tmp-123456", ".res.csv.run.json.tmp-42"}
	kept := []string{".other.csv.tmp-123456", ".res.csv.tmp-x.tmp-7", "res.csv.tmp-1", ".res.csv.tmp-12.bak"}
	for _, name := range append(stale, kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("line,primary_user_id\n2,auth0|someone\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The lock file a killed run left is no obstacle: its lock died with it.
	if err := os.WriteFile(filepath.Join(dir, "res.csv.lock"), []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, dir, nil, "run", "--in", in, "--out", "res.csv", "--dry-run", "--resume", "--no-progress")
	if r.code != exitOK {
		t.Fatalf("resumed run: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(dir, "res.csv.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file is left after the run (%v)", err)
	}
	for _, name := range stale {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed (%v)", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s, not a temporary file of res.csv, was removed: %v", name, err)
		}
	}
	if !strings.Contains(r.stderr, `"files":2`) {
		t.Errorf("the removal is not logged:\n%s", r.stderr)
	}

	// Through a symbolic link, those beside the file it leads to go too.
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "res.csv"), filepath.Join(real, "res.csv")); err != nil {
		t.Fatal(err)
	}
	symlink(t, "real/res.csv", filepath.Join(dir, "link.csv"))
	if err := os.Rename(filepath.Join(dir, "res.csv.run.json"), filepath.Join(dir, "link.csv.run.json")); err != nil {
		t.Fatal(err)
	}
	staleThere := filepath.Join(real, ".res.csv.tmp-99")
	if err := os.WriteFile(staleThere, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runIn(t, dir, nil, "run", "--in", in, "--out", "link.csv", "--dry-run", "--resume", "--no-progress")
	if r.code != exitOK {
		t.Fatalf("resumed run through a link: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Lstat(staleThere); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s not removed (%v)", staleThere, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link.csv")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link.csv is no longer a symbolic link (%v)", err)
	}
}
