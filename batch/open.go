package batch

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"
)

// This file holds the policy of the results file, beside the mechanics of
// resuming it (resume.go): a new file or a resumed one, the sidecar's
// check, the lock, the temporary files a killed run left, and the streams
// (standard output, a pipe) that stand in for a file.

// UsageError is a refusal to use the results file as the command line
// asks: it names the flag to change (another --out, or --resume). Nothing
// was read, sent or written.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// ResultsOptions says which results file a run writes and how.
type ResultsOptions struct {
	// Out is the --out of the run: a results file, or a stream (see
	// IsStreamOut).
	Out string
	// Stream is set when Out is a stream: it gets no sidecar, no lock and
	// no sync, and cannot be resumed.
	Stream bool
	// Resume continues the run that wrote Out; RetryFailed also retries
	// its rows that failed for a permanent reason.
	Resume, RetryFailed bool
	// DryRun is the mode of the run, recorded in the sidecar and checked
	// by a resume.
	DryRun bool
	// Stdout is where - and /dev/stdout write.
	Stdout io.Writer
	// Log receives the lines about a resume and stale temporary files;
	// nil logs nothing.
	Log *zap.Logger
}

func (o ResultsOptions) log() *zap.Logger {
	if o.Log == nil {
		return zap.NewNop()
	}
	return o.Log
}

// IsStreamOut reports whether out names a stream rather than a results
// file: - (standard output), /dev/stdout and its aliases, or any existing
// file that is not a regular file (a pipe, a terminal, /dev/null). A stream
// gets no sidecar, no lock and no sync, and cannot be resumed. It returns an
// error when out names a directory.
func IsStreamOut(out string) (bool, error) {
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

// ResolvePath returns the absolute path that path leads to once every
// symbolic link is followed, for a file that need not exist yet: the links
// of path itself are followed as far as they go, then those of its
// directory.
func ResolvePath(path string) string {
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
	// The names os.CreateTemp makes for the atomic rewrites of resume.go:
	// a random decimal number in place of its *.
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

// ClaimResults locks the results file o.Out for the run and removes the
// temporary files that an earlier run killed mid-rewrite left beside it.
// It returns the lock, nil for a stream, which is not locked, and a
// *UsageError when another run holds the lock.
func ClaimResults(o ResultsOptions) (*ResultsLock, error) {
	if o.Stream {
		return nil, nil
	}
	l, err := lockResults(o.Out)
	if err != nil {
		return nil, err
	}
	// A resume compacts the file a symbolic link leads to, beside it.
	places := []string{o.Out}
	if real := ResolvePath(o.Out); real != o.Out {
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
		o.log().Info("removed temporary files left by an interrupted run", zap.String("results", o.Out), zap.Int("files", n))
	}
	return l, nil
}

// CheckOverwrite refuses, with a *UsageError, to overwrite a results file
// that is not empty unless the run resumes it.
func (o ResultsOptions) CheckOverwrite() error {
	if o.Stream || o.Resume {
		return nil
	}
	if st, err := os.Stat(o.Out); err == nil && st.Size() > 0 {
		return usagef("--out %s already exists and is not empty; add --resume to continue the run that wrote it, or choose another file", o.Out)
	}
	return nil
}

// Results is a results file open for a run.
type Results struct {
	// Writer writes the run's result rows.
	Writer *ResultWriter
	// Done holds the lines already final in a resumed file; nil for a new
	// one.
	Done *LineSet
	// Kept is what a resumed file held.
	Kept ResumeReport

	close func() error
}

// Close syncs the results file to disk (a regular file) and closes it.
func (r *Results) Close() error { return r.close() }

// OpenResults opens the results file: a new one, with a sidecar recording
// fingerprint (the input's SHA-256) and the mode, or with o.Resume the one
// an earlier run of the same input wrote, repaired and compacted to its
// final rows. A stream is opened as it is: standard output for - and
// /dev/stdout, otherwise the named file, appended to and never created.
// A results file that cannot be resumed is refused with a *UsageError.
func OpenResults(o ResultsOptions, fingerprint string) (*Results, error) {
	if o.Stream {
		return openStream(o.Out, o.Stdout)
	}
	var r Results
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	header := true
	if st, err := os.Stat(o.Out); err == nil && st.Size() > 0 {
		if err := o.resume(&r, fingerprint); err != nil {
			return nil, err
		}
		flags = os.O_WRONLY | os.O_APPEND
		header = false
	} else if err := WriteRunInfo(SidecarPath(o.Out), NewRunInfo(fingerprint, o.DryRun, time.Now())); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(o.Out, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	sa := newSyncAhead(f, nil)
	if r.Writer, err = NewResultWriter(sa, header); err != nil {
		_ = sa.close()
		return nil, err
	}
	r.close = sa.close
	return &r, nil
}

// resume checks that the results file may be resumed by this run and
// prepares it, setting r.Done and r.Kept.
func (o ResultsOptions) resume(r *Results, fingerprint string) error {
	if err := o.CheckOverwrite(); err != nil {
		return err
	}
	info, err := ReadRunInfo(SidecarPath(o.Out))
	if err != nil {
		return usagef("cannot resume %s: %v", o.Out, err)
	}
	if err := CheckResume(info, fingerprint, o.DryRun); err != nil {
		return usagef("cannot resume %s: %v", o.Out, err)
	}
	done, rep, err := PrepareResume(o.Out, o.RetryFailed)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	o.log().Info("resuming", zap.String("results", o.Out), zap.Int("kept", rep.Kept),
		zap.Int("dropped", rep.Dropped), zap.Bool("torn_row_repaired", rep.Torn))
	r.Done, r.Kept = done, rep
	return nil
}

// openStream opens the stream out (see IsStreamOut): standard output for -
// and /dev/stdout, otherwise the named file, appended to and never created.
func openStream(out string, stdout io.Writer) (*Results, error) {
	if isStdout(out) {
		w, err := NewResultWriter(stdout, true)
		if err != nil {
			return nil, err
		}
		return &Results{Writer: w, close: func() error { return nil }}, nil
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	w, err := NewResultWriter(f, true)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &Results{Writer: w, close: func() error { return syncClose(f) }}, nil
}

// OpenResultsLater is OpenResults for a run that starts before the
// fingerprint of its input is known: fingerprint returns it once it has
// read the input. A results file to resume waits for it, as OpenResults
// needs it. A new one is created empty at once, and a goroutine of the
// Results writes its sidecar as soon as fingerprint returns; nothing is
// written to the results file before (a crash meanwhile leaves it empty,
// which the next run takes as new). Until then the results written wait
// in memory, up to heldBytes, beyond which a write waits. When fingerprint
// fails, the writes fail with its error, and so does Close, leaving the
// file empty. Besides OpenResults's errors, it returns fingerprint's.
func OpenResultsLater(o ResultsOptions, fingerprint func() (string, error)) (*Results, error) {
	if st, err := os.Stat(o.Out); o.Stream || err == nil && st.Size() > 0 {
		print := ""
		if !o.Stream {
			if print, err = fingerprint(); err != nil {
				return nil, err
			}
		}
		return OpenResults(o, print)
	}
	f, err := os.OpenFile(o.Out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	h := newHeldWriter(newSyncAhead(f, nil), func() error {
		print, err := fingerprint()
		if err != nil {
			return err
		}
		return WriteRunInfo(SidecarPath(o.Out), NewRunInfo(print, o.DryRun, time.Now()))
	})
	w, err := NewResultWriter(h, true) // its header is held: it cannot fail
	if err != nil {
		_ = h.close()
		return nil, err
	}
	return &Results{Writer: w, close: h.close}, nil
}

// heldBytes is the most bytes a heldWriter holds in memory.
const heldBytes = 8 << 20

// heldWriter passes its writes on to a syncAhead once a goroutine of its
// own has run its gate (OpenResultsLater's sidecar), holding them in
// memory until then: up to heldBytes, beyond which Write waits for the
// gate. After a gate that failed, every write fails with its error. Write
// is used by one goroutine at a time (the ResultWriter's lock); close,
// once, after the last Write.
type heldWriter struct {
	w       *syncAhead
	ready   chan struct{} // closed once the gate returned
	err     error         // the gate's error, read after ready
	held    []byte        // the bytes written before ready
	mapping []byte        // held's memory, when mapped (mapBytes)
	passed  bool          // the held bytes were passed on: writes go through
}

// newHeldWriter starts the goroutine that runs gate; close waits for it.
func newHeldWriter(w *syncAhead, gate func() error) *heldWriter {
	h := &heldWriter{w: w, ready: make(chan struct{})}
	go func() {
		defer close(h.ready)
		h.err = gate()
	}()
	return h
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if !h.passed {
		select {
		case <-h.ready:
		default:
			if len(h.held)+len(p) <= heldBytes {
				if h.held == nil {
					h.hold()
				}
				h.held = append(h.held, p...)
				return len(p), nil
			}
			<-h.ready
		}
		if err := h.pass(); err != nil {
			return 0, err
		}
	}
	return h.w.Write(p)
}

// hold makes room for heldBytes: mapped outside the heap where it can be,
// in huge pages (see mapBytes), for bytes that are written once, read once
// and dropped.
func (h *heldWriter) hold() {
	if b, mapping := mapBytes(heldBytes); b != nil {
		h.held, h.mapping = b[:0], mapping
		return
	}
	h.held = make([]byte, 0, heldBytes)
}

// pass writes the held bytes once the gate returned nil, or returns its
// error, and drops them.
func (h *heldWriter) pass() error {
	defer h.drop()
	if h.err != nil {
		return h.err
	}
	h.passed = true
	_, err := h.w.Write(h.held)
	return err
}

// drop releases the held bytes.
func (h *heldWriter) drop() {
	if h.mapping != nil {
		unmapBytes(h.mapping)
	}
	h.held, h.mapping = nil, nil
}

// close waits for the gate, writes the bytes still held, then syncs and
// closes the file (syncAhead.close). It returns the gate's error, if any.
func (h *heldWriter) close() error {
	<-h.ready
	var err error
	if !h.passed {
		err = h.pass()
	}
	return errors.Join(err, h.w.close())
}

// syncAheadBytes is how many bytes a syncAhead writes between two syncs.
const syncAheadBytes = 8 << 20

// syncAhead writes a results file and, every syncAheadBytes, has a
// goroutine of its own sync what was written so far, while the run goes
// on: the disk keeps up with the run, and the sync that ends it (close)
// waits only for the last bytes rather than for the whole file. Write is
// used by one goroutine at a time (the ResultWriter's lock); close, once,
// after the last Write.
type syncAhead struct {
	f     *os.File
	sync  func() error  // f.Sync, but in tests
	dirty int           // bytes written since the last sync was asked for
	kick  chan struct{} // asks for a sync; closed by close
	done  chan struct{} // closed when the syncing goroutine returns
	err   error         // the first error of a sync, read after done
}

// newSyncAhead starts the goroutine that syncs f with sync (f.Sync when
// nil); close stops it.
func newSyncAhead(f *os.File, sync func() error) *syncAhead {
	if sync == nil {
		sync = f.Sync
	}
	s := &syncAhead{f: f, sync: sync, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range s.kick {
			if err := s.sync(); err != nil && s.err == nil {
				s.err = err
			}
		}
	}()
	return s
}

func (s *syncAhead) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	if s.dirty += n; s.dirty >= syncAheadBytes {
		s.dirty = 0
		select {
		case s.kick <- struct{}{}:
		default: // a sync is due already; it takes these bytes too
		}
	}
	return n, err
}

// close stops the syncing goroutine and waits for it, then syncs and
// closes the file (syncClose). A sync that failed meanwhile fails close,
// since a later sync need not report it again.
func (s *syncAhead) close() error {
	close(s.kick)
	<-s.done
	err := syncClose(s.f)
	if s.err != nil {
		return errors.Join(fmt.Errorf("sync results: %w", s.err), err)
	}
	return err
}

// syncClose syncs f to disk when it is a regular file (a pipe or a terminal
// cannot be synced) and closes it.
func syncClose(f *os.File) error {
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("sync results: %w", err)
		}
	}
	return f.Close()
}
