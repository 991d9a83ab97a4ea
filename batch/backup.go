package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// BackupRecord is one line of a backup file (NDJSON): both users of a row
// as the Management API returned them just before the row was written to
// (merged, linked), the identity providers' tokens dropped. Line, Primary
// and Secondary name the input row; Secondary is the full id
// ("provider|user_id"). SecondaryUser is null for a link_with row, whose
// secondary cannot be read.
type BackupRecord struct {
	Time          time.Time       `json:"time"`
	Line          int             `json:"line"`
	Primary       string          `json:"primary_user_id"`
	Secondary     string          `json:"secondary_user_id"`
	PrimaryUser   json.RawMessage `json:"primary"`
	SecondaryUser json.RawMessage `json:"secondary"`
	// SecondaryRoles and SecondaryOrganizations are the ids of the roles
	// and organizations of the secondary, which an unlink does not give
	// back. NotRead names those the token could not read (NotReadRoles,
	// NotReadOrganizations): a rollback cannot restore them. All are empty
	// in the record of a link_with row and in older backups.
	SecondaryRoles         []string `json:"secondary_roles,omitempty"`
	SecondaryOrganizations []string `json:"secondary_organizations,omitempty"`
	// SecondaryPermissions are the permissions assigned to the secondary
	// directly (those of its roles come back with the roles), which an
	// unlink does not give back either; NotRead names them
	// (NotReadPermissions) when the token could not read them.
	SecondaryPermissions []linker.Permission `json:"secondary_permissions,omitempty"`
	// SecondaryOrganizationRoles are the ids of the roles the secondary
	// held within each of its organizations, by organization id.
	SecondaryOrganizationRoles map[string][]string `json:"secondary_organization_roles,omitempty"`
	NotRead                    []string            `json:"not_read,omitempty"`
}

// Backup is where a run records both users of a row before it writes to
// them. Record must return only once the record is durable (synced): the
// link is sent after it. It is called from the workers concurrently.
type Backup interface {
	Record(BackupRecord) error
}

// BackupWriter appends BackupRecords to a file, one JSON line each,
// syncing the file after every record. It is safe for concurrent use.
type BackupWriter struct {
	mu sync.Mutex
	f  *os.File
}

// NewBackupWriter returns a writer appending to f, an open file positioned
// at its end (see CutTornLine).
func NewBackupWriter(f *os.File) *BackupWriter { return &BackupWriter{f: f} }

// Record appends rec and syncs the file. Its errors are "write backup: ...".
func (w *BackupWriter) Record(rec BackupRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	return nil
}

// CutTornLine truncates f after its last newline: a record cut short by a
// crash is dropped, so that the records appended next start on a line of
// their own. It leaves f positioned at its end.
func CutTornLine(f *os.File) error {
	size, err := completeLength(f)
	if err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.Size() != size {
		if err := f.Truncate(size); err != nil {
			return fmt.Errorf("repair backup: %w", err)
		}
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	return nil
}

// BackupIndex finds the record of an input line in a backup file. When a
// line was backed up more than once (a resumed run backs up a row whose
// link had not been sent again), the first record counts: it holds the
// users as they were before linkbatch wrote to either.
type BackupIndex struct {
	r   io.ReaderAt
	off map[int]int64
}

// IndexBackup reads the backup r and indexes its records by line. A last
// record cut short (no final newline) is ignored; any other line that does
// not parse is an error naming it.
func IndexBackup(r io.ReaderAt, size int64) (*BackupIndex, error) {
	idx := &BackupIndex{r: r, off: map[int]int64{}}
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16)
	var off int64
	for n := 1; ; n++ {
		b, err := br.ReadBytes('\n')
		if err == io.EOF {
			return idx, nil // a torn last record, or none
		}
		if err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
		var head struct {
			Line int `json:"line"`
		}
		if err := json.Unmarshal(b, &head); err != nil || head.Line < 1 {
			return nil, fmt.Errorf("read backup: line %d: not a backup record", n)
		}
		if _, seen := idx.off[head.Line]; !seen {
			idx.off[head.Line] = off
		}
		off += int64(len(b))
	}
}

// ErrNoBackup is returned by BackupIndex.Lookup for a line with no record.
var ErrNoBackup = errors.New("no backup record")

// Lookup returns the first record of the input line. It is safe for
// concurrent use when the ReaderAt is (an *os.File is).
func (x *BackupIndex) Lookup(line int) (BackupRecord, error) {
	var rec BackupRecord
	off, ok := x.off[line]
	if !ok {
		return rec, fmt.Errorf("%w for line %d", ErrNoBackup, line)
	}
	br := bufio.NewReader(io.NewSectionReader(x.r, off, 1<<40))
	b, err := br.ReadBytes('\n')
	if err != nil {
		return rec, fmt.Errorf("read backup record of line %d: %w", line, err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &rec); err != nil {
		return rec, fmt.Errorf("read backup record of line %d: %w", line, err)
	}
	return rec, nil
}

// Len returns the number of lines with a record.
func (x *BackupIndex) Len() int { return len(x.off) }

// profiles decodes the users of a record; secondary is nil when the record
// has none.
func (rec BackupRecord) profiles() (primary, secondary *linker.Profile, err error) {
	primary = new(linker.Profile)
	if err := json.Unmarshal(rec.PrimaryUser, primary); err != nil {
		return nil, nil, fmt.Errorf("backup record of line %d: primary: %w", rec.Line, err)
	}
	if len(rec.SecondaryUser) == 0 || string(rec.SecondaryUser) == "null" {
		return primary, nil, nil
	}
	secondary = new(linker.Profile)
	if err := json.Unmarshal(rec.SecondaryUser, secondary); err != nil {
		return nil, nil, fmt.Errorf("backup record of line %d: secondary: %w", rec.Line, err)
	}
	return primary, secondary, nil
}
