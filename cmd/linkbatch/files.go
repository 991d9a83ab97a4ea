package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
)

// isStreamOut reports whether --out names a stream rather than a results
// file: - (standard output), /dev/stdout and its aliases, or any existing
// file that is not a regular file (a pipe, a terminal, /dev/null). A stream
// gets no sidecar, no lock and no sync, and cannot be resumed. It returns an
// error when out names a directory.
func isStreamOut(out string) (bool, error) {
	if out == "-" {
		return true, nil
	}
	// These name whatever a descriptor of the process is, even a regular
	// file: nothing may be created beside them.
	abs, _ := filepath.Abs(out)
	switch {
	case abs == "/dev/stdout", abs == "/dev/stderr",
		strings.HasPrefix(abs, "/dev/fd/"), strings.HasPrefix(abs, "/proc/"):
		return true, nil
	}
	st, err := os.Stat(out)
	switch {
	case err != nil && filepath.Dir(abs) == "/dev":
		return false, fmt.Errorf("%s: no such device (no results file is created in /dev)", out)
	case err != nil:
		return false, nil // created by the run; a bad path fails then
	case st.IsDir():
		return false, fmt.Errorf("%s is a directory", out)
	}
	return !st.Mode().IsRegular(), nil
}

// isStdout reports whether the stream out is the process's standard output.
func isStdout(out string) bool {
	switch filepath.Clean(out) {
	case "-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1":
		return true
	}
	return false
}

// resolvePath returns the absolute path that path leads to once every
// symbolic link is followed, for a file that need not exist yet: the links
// of path itself are followed as far as they go, then those of its
// directory.
func resolvePath(path string) string {
	p, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	for range 40 { // as many links as the kernel follows
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(dir, filepath.Base(p))
	}
	return p
}

// sameFile reports whether the paths a and b name one file: the same device
// and inode when both exist (whatever the spelling, symbolic or hard link),
// else the same resolved path.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	switch {
	case errA == nil && errB == nil:
		return os.SameFile(sa, sb)
	case errA == nil || errB == nil:
		return false // one exists and the other does not
	}
	return resolvePath(a) == resolvePath(b)
}

// checkAliases refuses, with a usage error, a command line on which two of
// the files a run reads or writes (--in, --out, the sidecar, the lock file
// and --report) are one file, however each is spelled. A stream --out is
// left out: nothing is created beside it and it is never read back.
func checkAliases(c *config) error {
	type named struct{ what, path string }
	var files []named
	if c.In != "-" {
		files = append(files, named{"--in", c.In})
	}
	if !c.outStream {
		files = append(files,
			named{"--out", c.Out},
			named{"the run record of --out", batch.SidecarPath(c.Out)},
			named{"the lock file of --out", lockPath(c.Out)})
	}
	if c.Report != "" {
		files = append(files, named{"--report", c.Report})
	}
	for i, a := range files {
		for _, b := range files[i+1:] {
			if sameFile(a.path, b.path) {
				return usagef("%s (%s) and %s (%s) name the same file", a.what, a.path, b.what, b.path)
			}
		}
	}
	return nil
}

// removeStaleTemps removes the temporary files that a run killed while it
// rewrote the results file out or its sidecar left in out's directory
// (.NAME.tmp-N and .NAME.run.json.tmp-N, which hold user ids), and returns
// how many it removed. Call it only while holding the lock on out: then no
// other run is writing them.
func removeStaleTemps(out string) (int, error) {
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	// The names os.CreateTemp makes for batch's atomic rewrites: a random
	// decimal number in place of its *.
	stale := regexp.MustCompile(`^\.` + regexp.QuoteMeta(base) + `(\.run\.json)?\.tmp-[0-9]+$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("remove stale temporary files: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !stale.MatchString(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("remove stale temporary files: %w", err)
	}
	return n, nil
}

// claimResults locks the results file of cfg for the run and removes the
// temporary files that an earlier run killed mid-rewrite left beside it. It
// returns the lock, nil for a stream --out, which is not locked.
func claimResults(cfg *config, log *zap.Logger) (*resultsLock, error) {
	if cfg.outStream {
		return nil, nil
	}
	l, err := lockResults(cfg.Out)
	if err != nil {
		return nil, err
	}
	// A resume compacts the file a symbolic link leads to, beside it.
	places := []string{cfg.Out}
	if real := resolvePath(cfg.Out); real != cfg.Out {
		places = append(places, real)
	}
	n := 0
	for _, out := range places {
		removed, err := removeStaleTemps(out)
		n += removed
		if err != nil {
			l.Release()
			return nil, err
		}
	}
	if n > 0 {
		log.Info("removed temporary files left by an interrupted run", zap.String("results", cfg.Out), zap.Int("files", n))
	}
	return l, nil
}
