package batch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// RunInfo is what a results file's sidecar records about the run that
// writes it, so that a resumed run can check it reads the same input.
type RunInfo struct {
	Version int       `json:"version"`
	Input   string    `json:"input_sha256"` // SHA-256 of the input's bytes
	Rows    int       `json:"input_rows,omitempty"`
	DryRun  bool      `json:"dry_run"`
	Started time.Time `json:"started"`
}

const runInfoVersion = 1

// SidecarPath returns the path of the sidecar of the results file out.
func SidecarPath(out string) string { return out + ".run.json" }

// Fingerprint returns the hex SHA-256 of everything r yields.
func Fingerprint(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("fingerprint input: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// NewRunInfo describes a run of the input with the given fingerprint.
func NewRunInfo(fingerprint string, dryRun bool, now time.Time) RunInfo {
	return RunInfo{Version: runInfoVersion, Input: fingerprint, DryRun: dryRun, Started: now.UTC()}
}

// WriteRunInfo writes the sidecar at path atomically (a temporary file
// renamed into place, synced).
func WriteRunInfo(path string, info RunInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// ReadRunInfo reads the sidecar at path.
func ReadRunInfo(path string) (RunInfo, error) {
	var info RunInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read %s: %w", path, err)
	}
	if info.Version != runInfoVersion || info.Input == "" {
		return info, fmt.Errorf("read %s: not a linkbatch run record (version %d)", path, info.Version)
	}
	return info, nil
}

// ErrOtherInput is returned by CheckResume when the results file was written
// for a different input.
var ErrOtherInput = errors.New("the results file was written for a different input")

// CheckResume reports whether a results file whose sidecar says info can be
// resumed by a run of the input with the given fingerprint and mode.
func CheckResume(info RunInfo, fingerprint string, dryRun bool) error {
	if info.Input != fingerprint {
		return fmt.Errorf("%w (input SHA-256 %.12s…, the results file records %.12s…)", ErrOtherInput, fingerprint, info.Input)
	}
	if info.DryRun != dryRun {
		mode := func(d bool) string {
			if d {
				return "a dry run"
			}
			return "a real run"
		}
		return fmt.Errorf("the results file was written by %s and this is %s; use a new --out", mode(info.DryRun), mode(dryRun))
	}
	return nil
}

// LineSet is a set of input line numbers, one bit each. The zero value is
// empty. It is not safe for concurrent writes; concurrent reads are fine.
type LineSet struct {
	bits []uint64
	n    int
}

// Add adds line to the set.
func (s *LineSet) Add(line int) {
	if line < 0 {
		return
	}
	i := line / 64
	if i >= len(s.bits) {
		s.bits = append(s.bits, make([]uint64, i+1-len(s.bits))...)
	}
	if s.bits[i]&(1<<(line%64)) == 0 {
		s.bits[i] |= 1 << (line % 64)
		s.n++
	}
}

// Has reports whether line is in the set.
func (s *LineSet) Has(line int) bool {
	if s == nil || line < 0 || line/64 >= len(s.bits) {
		return false
	}
	return s.bits[line/64]&(1<<(line%64)) != 0
}

// Len returns the number of lines in the set.
func (s *LineSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// ResumeReport says what PrepareResume found in a results file.
type ResumeReport struct {
	Kept    int  // final rows kept
	Dropped int  // rows removed: not final, or repeats of a line already final
	Torn    bool // the file ended in a partly written row, which was cut off
	// Invalid and Failed count the kept rows with those statuses: problems
	// the resumed run still has to report.
	Invalid, Failed int
}

// PrepareResume makes the results file at path ready to be appended to by a
// resumed run and returns the lines that already have a final result. A
// partly written last row (a crash mid-write) is cut off; rows that are not
// final (see Result.Final; with retryFailed, failed rows are not final
// either) are removed, so that the file ends with one row per line. The file
// is streamed, and replaced atomically when anything changes; when path is a
// symbolic link, the file it leads to is replaced, through a temporary file
// beside it.
func PrepareResume(path string, retryFailed bool) (*LineSet, ResumeReport, error) {
	var rep ResumeReport
	// Replace the file a symbolic link leads to, not the link.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, rep, fmt.Errorf("read results: %w", err)
	}
	defer f.Close()
	size, err := completeLength(f)
	if err != nil {
		return nil, rep, fmt.Errorf("read results: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.Size() != size {
		rep.Torn = true
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, rep, fmt.Errorf("read results: %w", err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, rep, fmt.Errorf("rewrite results: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 1<<16)
	w, err := NewResultWriter(bw, true)
	if err != nil {
		return nil, rep, err
	}
	done := &LineSet{}
	err = ReadResults(bufio.NewReaderSize(io.LimitReader(f, size), 1<<16), func(r Result) error {
		final := r.Final() && !(retryFailed && r.Status == StatusFailed)
		if !final || done.Has(r.Line) {
			rep.Dropped++
			return nil
		}
		done.Add(r.Line)
		rep.Kept++
		switch r.Status {
		case StatusInvalid:
			rep.Invalid++
		case StatusFailed:
			rep.Failed++
		}
		return w.Write(r)
	})
	var parseErr *csv.ParseError
	switch {
	case errors.As(err, &parseErr):
		// A crash tore the last row where it held a line break inside a
		// quoted cell (the cut at the last newline left an open quote):
		// keep the rows before it.
		rep.Torn = true
	case err != nil:
		return nil, rep, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Dropped == 0 && !rep.Torn && size > 0 {
		return done, rep, nil
	}
	if err := bw.Flush(); err != nil {
		return nil, rep, fmt.Errorf("rewrite results: %w", err)
	}
	if err := replaceWith(tmp, path); err != nil {
		return nil, rep, err
	}
	return done, rep, nil
}

// completeLength returns the length of f up to and including its last
// newline: what remains once a partly written last row is cut off.
func completeLength(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	buf := make([]byte, 4096)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// writeFileAtomic replaces path with data: written to a temporary file in
// the same directory, synced, and renamed over path.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return replaceWith(tmp, path)
}

// replaceWith syncs tmp, a file in path's directory, renames it over path
// and syncs the directory, so that a crash leaves either file whole.
func replaceWith(tmp *os.File, path string) error {
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
