package batch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/linkbatch/linkbatch/linker"
	"go.uber.org/zap"
)

// An unlink recreates the secondary as a new user without the roles and
// organization memberships it had. A run with a backup reads them before
// the link and records their ids (BackupRecord.SecondaryRoles,
// SecondaryOrganizations); a rollback grants them again to the recreated
// user. A token that may not read them (403: read:roles,
// read:organizations) does not stop the run: the record says what was not
// read (NotRead) and the run warns once.

// Names of what a backup may leave unread, in BackupRecord.NotRead.
const (
	NotReadRoles         = "roles"
	NotReadOrganizations = "organizations"
)

// grantReads is what a Runner remembers of reading grants: a 403 is not
// asked again for each row (the token's scopes do not change), and is
// warned of once.
type grantReads struct {
	warn      sync.Once
	forbidden [2]atomic.Bool // roles, organizations
}

// grants are the role and organization ids of a user, and what of them
// could not be read.
type grants struct {
	roles, orgs []string
	notRead     []string
}

// readGrants reads the roles and organizations of the user id through the
// pacer, every page. A 403 for either leaves it unread (warned once per
// run, and not asked again); any other failure settles the row failed (done), not linked: a
// resumed run tries it again. keep and fatal are as for process.
func (r *Runner) readGrants(ctx context.Context, id string, res *Result) (g grants, done, keep bool, fatal error) {
	lists := []struct {
		what, scope string
		dst         *[]string
		page        func(ctx context.Context, page int) ([]string, bool, *linker.Response, error)
	}{
		{NotReadRoles, "read:roles", &g.roles, func(ctx context.Context, n int) ([]string, bool, *linker.Response, error) {
			p, resp, err := r.Client.UserRoles(ctx, id, n)
			ids := make([]string, len(p.Items))
			for i, x := range p.Items {
				ids[i] = x.ID
			}
			return ids, p.More(), resp, err
		}},
		{NotReadOrganizations, "read:organizations", &g.orgs, func(ctx context.Context, n int) ([]string, bool, *linker.Response, error) {
			p, resp, err := r.Client.UserOrganizations(ctx, id, n)
			ids := make([]string, len(p.Items))
			for i, x := range p.Items {
				ids[i] = x.ID
			}
			return ids, p.More(), resp, err
		}},
	}
	for i, l := range lists {
		if r.grantReads.forbidden[i].Load() {
			g.notRead = append(g.notRead, l.what)
			continue
		}
		for n := 0; ; n++ {
			var ids []string
			var more bool
			_, err := r.call(ctx, "get_"+l.what, res, func(ctx context.Context) (*linker.Response, error) {
				var resp *linker.Response
				var err error
				ids, more, resp, err = l.page(ctx, n)
				return resp, err
			})
			switch {
			case err == nil:
				*l.dst = append(*l.dst, ids...)
				if more {
					continue
				}
			case ctx.Err() != nil:
				return g, true, false, nil
			case linker.IsForbidden(err):
				*l.dst = nil
				g.notRead = append(g.notRead, l.what)
				r.grantReads.forbidden[i].Store(true)
				r.grantReads.warn.Do(func() {
					if r.Log != nil {
						r.Log.Warn("the backup cannot hold the secondaries' roles or organization memberships: the token lacks read:roles or read:organizations; a rollback will not restore what it could not read",
							zap.String("not_read", l.what), zap.String("scope", l.scope))
					}
				})
			case linker.IsAuth(err):
				return g, true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
			default:
				fail(res, err)
				res.Error = "back up the " + l.what + " of " + id + " (not linked): " + res.Error
				return g, true, true, nil
			}
			break
		}
	}
	return g, false, true, nil
}

// restoreGrants grants the recreated secondary id the roles and
// organization memberships its backup record holds. On a failure it
// settles the row failed, naming what was not restored; keep and fatal
// are as for process.
func restoreGrants(ctx context.Context, r *Runner, id string, rec BackupRecord, res *Result) (stop, keep bool, fatal error) {
	var missed []string
	var last error
	if len(rec.SecondaryRoles) > 0 {
		_, err := r.call(ctx, "assign_roles", res, func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AssignRoles(ctx, id, rec.SecondaryRoles)
		})
		if stop, keep, fatal := grantErr(ctx, err); stop {
			return stop, keep, fatal
		}
		if err != nil {
			missed, last = append(missed, "roles "+strings.Join(rec.SecondaryRoles, ",")), err
		}
	}
	for _, org := range rec.SecondaryOrganizations {
		_, err := r.call(ctx, "add_members", res, func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AddOrganizationMembers(ctx, org, []string{id})
		})
		if stop, keep, fatal := grantErr(ctx, err); stop {
			return stop, keep, fatal
		}
		if err != nil {
			missed, last = append(missed, "membership of "+org), err
		}
	}
	if last == nil {
		return false, true, nil
	}
	fail(res, last)
	res.Error = "unlinked, but not restored to " + id + ": " + strings.Join(missed, "; ") + ": " + res.Error
	return true, true, nil
}

// grantErr tells whether a grant's error stops the row at once: a
// cancelled run (no result) or refused credentials (fatal). A 403 is the
// row's failure, not the run's: the rollback's other rows need no grant
// scope when their secondaries had no roles.
func grantErr(ctx context.Context, err error) (stop, keep bool, fatal error) {
	switch {
	case err == nil:
		return false, true, nil
	case ctx.Err() != nil:
		return true, false, nil
	case linker.IsAuth(err) && !linker.IsForbidden(err):
		return true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	return false, true, nil
}
