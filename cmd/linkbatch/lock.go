package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// errLocked is returned by tryLock when another process holds the lock.
var errLocked = errors.New("locked by another process")

// lockPath returns the lock file of the results file out: out's resolved
// path (symbolic links followed) with .lock added, so that every spelling
// of out locks the same file.
func lockPath(out string) string { return resolvePath(out) + ".lock" }

// resultsLock is the exclusive lock a run holds on its results file from
// before it reads anything until it exits: an flock(2) on out's lock file,
// which stays in place and records the holder's pid, and one on the results
// file itself when it exists, which also catches a second name (a hard link)
// for it. The kernel drops both when the process ends, however it ends.
type resultsLock struct{ files []*os.File }

// lockResults takes the lock on the results file out without waiting. When
// another run holds it, it returns a usage error that names the holder's
// pid, when known.
func lockResults(out string) (*resultsLock, error) {
	l := &resultsLock{}
	path := lockPath(out)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock results: %w", err)
	}
	if err := tryLock(f); err != nil {
		_ = f.Close()
		return nil, lockError(out, path, err)
	}
	l.files = append(l.files, f)
	if err := recordPID(f); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock results: %s: %w", path, err)
	}
	r, err := os.Open(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l, nil
	case err != nil:
		l.Release()
		return nil, fmt.Errorf("lock results: %w", err)
	}
	if err := tryLock(r); err != nil {
		_ = r.Close()
		l.Release()
		return nil, lockError(out, "", err)
	}
	l.files = append(l.files, r)
	return l, nil
}

// Release drops the lock. The lock file stays: removing it would let a run
// that opened it meanwhile lock a file nobody else sees.
func (l *resultsLock) Release() {
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
	holder := "pid unknown"
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
