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

// An unlink recreates the secondary as a new user without the roles,
// organization memberships (and roles within them) and permissions it had.
// A run with a backup reads them before the link and records them
// (BackupRecord.SecondaryRoles, SecondaryOrganizations,
// SecondaryOrganizationRoles, SecondaryPermissions: those assigned
// directly, not those of its roles, which come back with the roles); a
// rollback grants them again to the recreated user. A token that may not
// read them (403: read:roles, read:organizations,
// read:organization_member_roles, read:users) does not stop the run: the
// record says what was not read (NotRead) and the run warns once.

// Names of what a backup may leave unread, in BackupRecord.NotRead.
const (
	NotReadRoles         = "roles"
	NotReadOrganizations = "organizations"
	NotReadPermissions   = "permissions"
	// NotReadOrganizationRoles: the roles held within organizations.
	NotReadOrganizationRoles = "organization_roles"
)

// grantReads is what a Runner remembers of reading grants: a 403 is not
// asked again for each row (the token's scopes do not change), and is
// warned of once.
type grantReads struct {
	warn      sync.Once
	forbidden [4]atomic.Bool // roles, organizations, permissions, organization roles
}

// grants are the role and organization ids of a user, the permissions
// assigned to it directly, and what of them could not be read.
type grants struct {
	roles, orgs []string
	orgRoles    map[string][]string // by organization id
	perms       []linker.Permission
	notRead     []string
}

// readGrants reads the roles, organizations (and roles within each) and
// permissions of the user id through the pacer, every page. A 403 for either leaves it unread (warned once per
// run, and not asked again); any other failure settles the row failed (done), not linked: a
// resumed run tries it again. keep and fatal are as for process.
func (r *Runner) readGrants(ctx context.Context, id string, res *Result) (g grants, done, keep bool, fatal error) {
	org, orgPage := 0, 0 // the organization, and its page, whose roles are read next
	lists := []struct {
		what, scope string
		clear       func()
		none        func() bool // nothing to read
		page        func(ctx context.Context, page int) (bool, *linker.Response, error)
	}{
		{NotReadRoles, "read:roles", func() { g.roles = nil }, nil, func(ctx context.Context, n int) (bool, *linker.Response, error) {
			p, resp, err := r.Client.UserRoles(ctx, id, n)
			for _, x := range p.Items {
				g.roles = append(g.roles, x.ID)
			}
			return p.More(), resp, err
		}},
		{NotReadOrganizations, "read:organizations", func() { g.orgs = nil }, nil, func(ctx context.Context, n int) (bool, *linker.Response, error) {
			p, resp, err := r.Client.UserOrganizations(ctx, id, n)
			for _, x := range p.Items {
				g.orgs = append(g.orgs, x.ID)
			}
			return p.More(), resp, err
		}},
		{NotReadPermissions, "read:users", func() { g.perms = nil }, nil, func(ctx context.Context, n int) (bool, *linker.Response, error) {
			p, resp, err := r.Client.UserPermissions(ctx, id, n)
			for _, x := range p.Items {
				// Only those assigned directly: a role's come back with
				// the role.
				if x.Direct() {
					g.perms = append(g.perms, linker.Permission{ResourceServerIdentifier: x.ResourceServerIdentifier, PermissionName: x.PermissionName})
				}
			}
			return p.More(), resp, err
		}},
		{NotReadOrganizationRoles, "read:organization_member_roles", func() { g.orgRoles = nil }, func() bool { return len(g.orgs) == 0 },
			func(ctx context.Context, _ int) (bool, *linker.Response, error) {
				o := g.orgs[org]
				p, resp, err := r.Client.OrganizationMemberRoles(ctx, o, id, orgPage)
				if err != nil {
					return false, resp, err
				}
				for _, x := range p.Items {
					if g.orgRoles == nil {
						g.orgRoles = map[string][]string{}
					}
					g.orgRoles[o] = append(g.orgRoles[o], x.ID)
				}
				if orgPage++; !p.More() {
					org, orgPage = org+1, 0
				}
				return org < len(g.orgs), resp, nil
			}},
	}
	for i, l := range lists {
		if l.none != nil && l.none() {
			continue
		}
		if r.grantReads.forbidden[i].Load() {
			g.notRead = append(g.notRead, l.what)
			continue
		}
		for n := 0; ; n++ {
			var more bool
			_, err := r.call(ctx, "get_"+l.what, res, func(ctx context.Context) (*linker.Response, error) {
				var resp *linker.Response
				var err error
				more, resp, err = l.page(ctx, n)
				return resp, err
			})
			switch {
			case err == nil:
				if more {
					continue
				}
			case ctx.Err() != nil:
				return g, true, false, nil
			case linker.IsForbidden(err):
				l.clear()
				g.notRead = append(g.notRead, l.what)
				r.grantReads.forbidden[i].Store(true)
				r.grantReads.warn.Do(func() {
					if r.Log != nil {
						r.Log.Warn("the backup cannot hold all the secondaries' grants: the token lacks read:roles, read:organizations, read:organization_member_roles or read:users; a rollback will not restore what it could not read",
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

// restoreGrants grants the recreated secondary id the roles, permissions,
// organization memberships and roles within them its backup record holds. On a failure it
// settles the row failed, naming what was not restored; keep and fatal
// are as for process.
func restoreGrants(ctx context.Context, r *Runner, id string, rec BackupRecord, res *Result) (stop, keep bool, fatal error) {
	var missed []string
	var last error
	// grant sends one grant; ok is false when it failed, naming what in
	// missed, or when the row stops.
	grant := func(kind, what string, send func(context.Context) (*linker.Response, error)) (ok, stop, keep bool, fatal error) {
		_, err := r.call(ctx, kind, res, send)
		if stop, keep, fatal := grantErr(ctx, err); stop {
			return false, stop, keep, fatal
		}
		if err != nil {
			missed, last = append(missed, what), err
			return false, false, true, nil
		}
		return true, false, true, nil
	}
	if len(rec.SecondaryRoles) > 0 {
		if _, stop, keep, fatal := grant("assign_roles", "roles "+strings.Join(rec.SecondaryRoles, ","), func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AssignRoles(ctx, id, rec.SecondaryRoles)
		}); stop {
			return stop, keep, fatal
		}
	}
	if len(rec.SecondaryPermissions) > 0 {
		if _, stop, keep, fatal := grant("assign_permissions", fmt.Sprintf("%d permissions", len(rec.SecondaryPermissions)), func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AssignPermissions(ctx, id, rec.SecondaryPermissions)
		}); stop {
			return stop, keep, fatal
		}
	}
	for _, org := range rec.SecondaryOrganizations {
		member, stop, keep, fatal := grant("add_members", "membership of "+org, func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AddOrganizationMembers(ctx, org, []string{id})
		})
		if stop {
			return stop, keep, fatal
		}
		roles := rec.SecondaryOrganizationRoles[org]
		if len(roles) == 0 {
			continue
		}
		if !member {
			missed = append(missed, "roles "+strings.Join(roles, ",")+" in "+org)
			continue
		}
		if _, stop, keep, fatal := grant("assign_member_roles", "roles "+strings.Join(roles, ",")+" in "+org, func(ctx context.Context) (*linker.Response, error) {
			return r.Client.AssignOrganizationMemberRoles(ctx, org, id, roles)
		}); stop {
			return stop, keep, fatal
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
