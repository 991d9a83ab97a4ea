package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// ErrBackup is wrapped by the error that stops a run whose backup could
// not be written: no row is written to without its backup.
var ErrBackup = errors.New("backup failed")

// DefaultFresh is how long the users read before a merge are trusted: an
// older read of the primary is read again just before its PATCH, so that
// the merge does not overwrite a change made meanwhile.
const DefaultFresh = 5 * time.Second

// writesUsers reports whether a real run reads both users of each row to
// back them up or merge their metadata before the link.
func (r *Runner) writesUsers() bool {
	return !r.Config.DryRun && (r.Backup != nil || r.Config.Merges())
}

// now returns the Runner's time.
func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// backup records the users of a row about to be written to; its error,
// wrapping ErrBackup, stops the run.
func (r *Runner) backup(req linker.LinkRequest, line int, users pair) error {
	rec := BackupRecord{
		Time: r.now().UTC(), Line: line, Primary: req.PrimaryID,
		PrimaryUser: users.primaryDoc, SecondaryUser: users.secondaryDoc,
		SecondaryRoles: users.grants.roles, SecondaryOrganizations: users.grants.orgs,
		SecondaryPermissions: users.grants.perms, SecondaryOrganizationRoles: users.grants.orgRoles, NotRead: users.grants.notRead,
	}
	if req.LinkWith == "" {
		rec.Secondary = req.Provider + "|" + req.UserID
	}
	if rec.SecondaryUser == nil {
		rec.SecondaryUser = []byte("null")
	}
	if err := r.Backup.Record(rec); err != nil {
		return fmt.Errorf("%w: line %d: %w", ErrBackup, line, err)
	}
	return nil
}

// merge merges the secondary's metadata into the primary's with one PATCH
// of what changes, reading the primary again first when users were read
// longer than Config.Fresh ago. A failed PATCH settles the row failed
// (done): it is not linked without its merge. keep and fatal are as for
// process.
func (r *Runner) merge(ctx context.Context, req linker.LinkRequest, users pair, res *Result) (done, keep bool, fatal error) {
	m := planMerge(r.Config.Merge, users.primary, users.secondary)
	if m.empty() {
		return false, true, nil
	}
	fresh := r.Config.Fresh
	if fresh <= 0 {
		fresh = DefaultFresh
	}
	var err error
	if r.now().Sub(users.readAt) > fresh {
		var primary *linker.Profile
		if primary, _, err = r.getDocument(ctx, req.PrimaryID, res); err == nil {
			if m = planMerge(r.Config.Merge, primary, users.secondary); m.empty() {
				return false, true, nil
			}
		}
	}
	if err == nil {
		err = r.patchUser(ctx, req.PrimaryID, m.patch, res)
	}
	return settleWrite(ctx, err, res, "merge metadata (not linked): ")
}

// patchUser sends one PATCH of a user's metadata, paced and retried.
func (r *Runner) patchUser(ctx context.Context, id string, patch linker.UserPatch, res *Result) error {
	_, err := r.call(ctx, "patch_user", res, func(ctx context.Context) (*linker.Response, error) {
		_, resp, err := r.Client.PatchUser(ctx, id, patch)
		return resp, err
	})
	return err
}

// settleWrite settles a row after the reads and the write it needs before
// (or after) its link: err nil goes on; the run's end stops the row and
// leaves it to a resume; refused credentials stop the run (fatal); any
// other error fails the row, its message after what. stop and keep are as
// for process.
func settleWrite(ctx context.Context, err error, res *Result, what string) (stop, keep bool, fatal error) {
	switch {
	case err == nil:
		return false, true, nil
	case ctx.Err() != nil:
		return true, false, nil
	case linker.IsAuth(err):
		return true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	fail(res, err)
	res.Error = what + res.Error
	return true, true, nil
}
