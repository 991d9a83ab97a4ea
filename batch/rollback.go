package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strings"

	"github.com/linkbatch/linkbatch/linker"
)

// Rollback undoes the links of a run from its backup, one results row at a
// time: it is a RowAction (Act) over the rows of a RollbackSource.
//
// For a row it unlinks the secondary identity from the primary (the API
// makes it a user again, under its old id, with no metadata), then PATCHes
// the recreated secondary with the metadata its backup recorded, then
// PATCHes the primary back to its backed-up metadata: keys the merge
// changed get their old values, keys it added are removed (set to null).
// Keys that neither the backup nor the merged-in secondary hold are left
// alone: linkbatch did not write them. An empty object is never sent.
// Last it grants the recreated secondary the roles and organization
// memberships its backup recorded (see grants.go); a record that could not
// read them leaves a note on the row.
//
// The row is unlinked, or already_unlinked when the primary no longer holds
// the identity (an earlier rollback whose answer was lost, or a resumed
// one; the metadata is restored all the same), or failed: a failure of the
// unlink, of a PATCH or of a grant after retries, its error naming what was
// not restored, retryable when transient. Every step
// is idempotent, so a resumed rollback runs a failed row again.
type Rollback struct {
	Index *BackupIndex
}

// Act rolls back one row; see Rollback. Its fatal errors wrap
// ErrCredentials.
func (rb *Rollback) Act(ctx context.Context, r *Runner, row Row, res Result) (Result, bool, error) {
	rec, err := rb.Index.Lookup(row.Line)
	if err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return res, true, nil
	}
	primary, secondary, err := rec.profiles()
	if err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return res, true, nil
	}
	req, err := row.Request()
	if err != nil {
		res.Status, res.Error = StatusInvalid, err.Error()
		return res, true, nil
	}
	status, stop, keep, fatal := rb.unlink(ctx, r, req, &res)
	if stop {
		return res, keep, fatal
	}
	steps := []struct {
		id            string
		backed, added *linker.Profile
	}{
		{req.Provider + "|" + req.UserID, secondary, nil},
		{req.PrimaryID, primary, secondary},
	}
	for _, s := range steps {
		if s.backed == nil {
			continue
		}
		if stop, keep, fatal := restore(ctx, r, s.id, s.backed, s.added, &res); stop {
			return res, keep, fatal
		}
	}
	if stop, keep, fatal := restoreGrants(ctx, r, req.Provider+"|"+req.UserID, rec, &res); stop {
		return res, keep, fatal
	}
	res.Status, res.ErrorCode, res.Error = status, "", ""
	if len(rec.NotRead) > 0 {
		res.Error = "note: the backup could not read the secondary's " + strings.ReplaceAll(strings.Join(rec.NotRead, " and "), "_", " ") + ": not restored"
	}
	return res, true, nil
}

// unlink unlinks the row's secondary. It returns the row's status when the
// metadata is to be restored next, or stop and the row's outcome.
func (rb *Rollback) unlink(ctx context.Context, r *Runner, req linker.LinkRequest, res *Result) (status Status, stop, keep bool, fatal error) {
	_, err := r.call(ctx, "unlink", res, func(ctx context.Context) (*linker.Response, error) {
		_, resp, err := r.Client.Unlink(ctx, req.PrimaryID, req.Provider, req.UserID)
		return resp, err
	})
	switch {
	case err == nil:
		return StatusUnlinked, false, true, nil
	case ctx.Err() != nil:
		return "", true, false, nil
	case linker.IsAuth(err):
		return "", true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	var ae *linker.APIError
	if !errors.As(err, &ae) || ae.Status >= 500 {
		fail(res, err)
		return "", true, true, nil
	}
	// Refused: the identity may be gone from the primary already.
	p, _, gerr := r.getDocument(ctx, req.PrimaryID, res)
	switch {
	case gerr == nil && !linker.Has(p.Identities, req.Provider, req.UserID):
		return StatusAlreadyUnlinked, false, true, nil
	case ctx.Err() != nil:
		return "", true, false, nil
	case linker.IsAuth(gerr):
		return "", true, false, fmt.Errorf("%w: %w", ErrCredentials, gerr)
	}
	fail(res, err)
	return "", true, true, nil
}

// restore reads the user id and PATCHes its metadata back to backed's (see
// restorePatch), if anything differs.
func restore(ctx context.Context, r *Runner, id string, backed, added *linker.Profile, res *Result) (stop, keep bool, fatal error) {
	cur, _, err := r.getDocument(ctx, id, res)
	if err == nil {
		patch := restorePatch(backed, added, cur)
		if patch.UserMetadata == nil && patch.AppMetadata == nil {
			return false, true, nil
		}
		err = r.patchUser(ctx, id, patch, res)
	}
	return settleWrite(ctx, err, res, "unlinked, but restoring the metadata of "+id+" failed: ")
}

// RollbackSource is the Source of a rollback: the rows of a results file
// whose status is linked, and those already_linked or failed that have a
// backup record (linkbatch backed the pair up, so it wrote to it: a run
// killed after a link and before its result was written finds the pair
// already_linked when resumed, and a link that failed after a merge leaves
// the primary merged), each with the ids its backup record names, and
// only the lines given when lines is set. A pair already linked before the
// run has no backup record (it is settled before the backup) and is left
// alone. A linked row whose line has no backup record, or whose record
// names another pair, is invalid. Its rows need no acknowledgement. It is
// not safe for concurrent use.
type RollbackSource struct {
	next  func() (Result, error, bool)
	stop  func()
	f     io.Closer
	index *BackupIndex
	lines *LineSet
}

// OpenRollback opens the results file at path for a rollback with the
// backup's index; lines, when not nil, limits it to those lines.
func OpenRollback(path string, index *BackupIndex, lines *LineSet) (*RollbackSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	seq := func(yield func(Result, error) bool) {
		stopped := errors.New("stopped")
		err := ReadResults(f, func(res Result) error {
			if !yield(res, nil) {
				return stopped
			}
			return nil
		})
		if err != nil && !errors.Is(err, stopped) {
			yield(Result{}, err)
		}
	}
	next, stop := iter.Pull2(iter.Seq2[Result, error](seq))
	return &RollbackSource{next: next, stop: stop, f: f, index: index, lines: lines}, nil
}

// Read returns the next row to roll back; ErrEndOfInput after the last; or
// the error that ended reading the results file, wrapped as
// "read results: ...".
func (s *RollbackSource) Read(context.Context) (Row, AckFunc, error) {
	for {
		res, err, ok := s.next()
		switch {
		case !ok:
			return Row{}, nil, ErrEndOfInput
		case err != nil:
			return Row{}, nil, fmt.Errorf("read results: %w", err)
		case res.Status != StatusLinked && res.Status != StatusAlreadyLinked && res.Status != StatusFailed,
			s.lines != nil && !s.lines.Has(res.Line):
			continue
		}
		row := Row{Line: res.Line, Primary: res.Primary, Secondary: res.Secondary}
		rec, err := s.index.Lookup(res.Line)
		switch {
		case res.Status != StatusLinked && errors.Is(err, ErrNoBackup):
			continue // linkbatch wrote nothing to the pair
		case err != nil:
			row.Err = fieldErrOf("line", err)
		case rec.Primary != res.Primary:
			row.Err = fieldErr("primary_user_id", fmt.Sprintf("the backup record of line %d is for %s, not this primary", res.Line, rec.Primary))
		case rec.Secondary == "":
			row.Err = fieldErr("secondary_user_id", "linked with a link_with token: the backup does not name the secondary to unlink")
		case !sameSecondary(rec.Secondary, res.Secondary):
			row.Err = fieldErr("secondary_user_id", fmt.Sprintf("the backup record of line %d is for %s, not this secondary", res.Line, rec.Secondary))
		default:
			row.Secondary = rec.Secondary
		}
		return row, nil, nil
	}
}

// sameSecondary reports whether the full id in a backup record is the
// secondary a results row names: its full id, or its bare user id (an
// input with a secondary_provider column).
func sameSecondary(full, named string) bool {
	return full == named || strings.HasSuffix(full, "|"+named)
}

// Close closes the results file.
func (s *RollbackSource) Close() error {
	s.stop()
	return s.f.Close()
}
