package batch

import (
	"errors"
	"fmt"
	"os"
)

// BackupFile is the backup of a run open for appending, locked as a
// results file is (see ResultsLock): a lock file beside it (PATH.lock) and
// the file itself, so that two runs never append to one backup.
type BackupFile struct {
	*BackupWriter
	f    *os.File
	lock *ResultsLock
}

// OpenBackup locks the backup at path, creating it if need be, and opens
// it for appending, cutting off a record torn by a crash. A backup that is
// not empty is appended to only by a resumed run (resume): a new run would
// mix its input's line numbers with another's, and a rollback finds a
// row's record by its line. It returns a *UsageError when the backup is
// refused or another run holds it.
func OpenBackup(path string, resume bool) (*BackupFile, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		return nil, usagef("--backup %s is not a regular file", path)
	case err == nil && st.Size() > 0 && !resume:
		return nil, usagef("--backup %s already exists and is not empty; add --resume to continue the run that wrote it, or choose another file", path)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("open backup: %w", err)
	}
	lockPath := LockPath(path)
	lf, err := lockFile(lockPath)
	if err != nil {
		return nil, lockError("--backup", path, lockPath, err)
	}
	l := &ResultsLock{path: lockPath, files: []*os.File{lf}}
	if err := recordPID(lf); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock backup: %s: %w", lockPath, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600) // it holds personal data
	if err != nil {
		l.Release()
		return nil, fmt.Errorf("open backup: %w", err)
	}
	if err := tryLock(f); err != nil {
		_ = f.Close()
		l.Release()
		return nil, lockError("--backup", path, "", err)
	}
	if err := CutTornLine(f); err != nil {
		_ = f.Close()
		l.Release()
		return nil, err
	}
	return &BackupFile{BackupWriter: NewBackupWriter(f), f: f, lock: l}, nil
}

// Close syncs and closes the backup and releases its lock.
func (b *BackupFile) Close() error {
	err := b.f.Sync()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	b.lock.Release()
	if err != nil {
		return fmt.Errorf("close backup: %w", err)
	}
	return nil
}
