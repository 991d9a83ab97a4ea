package batch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// errLocked is returned by tryLock when another process holds the lock.
var errLocked = errors.New("locked by another process")

// LockPath returns the lock file of the results file out: out's resolved
// path (symbolic links followed) with .lock added, so that every spelling
// of out locks the same file.
func LockPath(out string) string { return ResolvePath(out) + ".lock" }

// ResultsLock is the exclusive lock a run holds on its results file from
// before it reads anything until it exits: an flock(2) on out's lock file,
// which records the holder's pid, and one on the results file itself when
// it exists, which also catches a second name (a hard link) for it. The
// kernel drops both when the process ends, however it ends; a lock file
// left by a killed run is taken over by the next one. A ResultsLock is used
// by one goroutine; a nil *ResultsLock holds nothing.
type ResultsLock struct {
	path  string // the lock file, removed on release
	files []*os.File
}

// lockResults takes the lock on the results file out without waiting. When
// another run holds it, it returns a *UsageError that names the holder's
// pid, when known.
func lockResults(out string) (*ResultsLock, error) {
	path := LockPath(out)
	f, err := lockFile(path)
	if err != nil {
		return nil, lockError(out, path, err)
	}
	l := &ResultsLock{path: path, files: []*os.File{f}}
	if err := recordPID(f); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock results: %s: %w", path, err)
	}
	if err := l.Hold(out); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// Hold locks the results file out itself as well, if it exists, for as
// long as l is held. Call it again once the run has created or replaced
// the file. A nil l holds nothing.
func (l *ResultsLock) Hold(out string) error {
	if l == nil {
		return nil
	}
	r, err := os.Open(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("lock results: %w", err)
	}
	// A second flock of a file this process holds would fail: two opens
	// are two locks.
	if st, err := r.Stat(); err == nil {
		for _, f := range l.files {
			if held, err := f.Stat(); err == nil && os.SameFile(held, st) {
				return r.Close()
			}
		}
	}
	if err := tryLock(r); err != nil {
		_ = r.Close()
		return lockError(out, "", err)
	}
	l.files = append(l.files, r)
	return nil
}

// lockFile creates or opens the lock file at path and locks it. A run that
// releases its lock removes the file first, so a lock taken on a file that
// no longer is at path is dropped and taken again on the one that is.
func lockFile(path string) (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := tryLock(f); err != nil {
			_ = f.Close()
			return nil, err
		}
		held, err1 := f.Stat()
		named, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			return f, nil
		}
		_ = f.Close() // removed by its holder meanwhile
	}
	return nil, errLocked
}

// Release drops the lock and removes the lock file, while still holding it.
// A nil l holds nothing.
func (l *ResultsLock) Release() {
	if l == nil {
		return
	}
	if len(l.files) > 0 {
		_ = os.Remove(l.path)
	}
	for _, f := range l.files {
		_ = f.Close()
	}
	l.files = nil
}

// lockError says who holds the lock on out, as far as path (the lock file,
// or "" when unknown) tells.
func lockError(out, path string, err error) error {
	if !errors.Is(err, errLocked) {
		return fmt.Errorf("lock results: %w", err)
	}
	holder := "pid unknown: it runs on another name for the same file"
	if path != "" {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
	}
	return usagef("--out %s is in use by another linkbatch run (%s); wait for it to end, or use another --out", out, holder)
}

// recordPID writes the process id into the lock file f.
func recordPID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}
