package batch

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// allGrantScopes read and grant roles, organization memberships and roles
// within organizations.
var allGrantScopes = []string{"read:users", "update:users", "read:roles", "read:organizations", "create:organization_members",
	"read:organization_member_roles", "create:organization_member_roles"}

// scopedRunner is newTestRunner with a token holding the given scopes.
func scopedRunner(t *testing.T, srv *linkertest.Server, cfg Config, scopes ...string) *Runner {
	t.Helper()
	r := newTestRunner(t, srv, cfg)
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.Client, err = linker.NewClient(base, linker.StaticToken(srv.IssueToken(time.Hour, scopes...)), linker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// grantsTenant is metadataTenant where github|s1 holds two roles, two
// organizations and two permissions of its own (one of them also through
// rol_a), github|s3 one role (whose permission it holds through it alone),
// and github|s2 none.
func grantsTenant(t *testing.T) *linkertest.Server {
	t.Helper()
	srv := metadataTenant(t)
	for _, id := range []string{"rol_a", "rol_b", "rol_p"} {
		srv.AddRole(id, id)
	}
	srv.AddOrganization("org_x", "x")
	srv.AddOrganization("org_y", "y")
	srv.AddRolePermissions("rol_a", linkertest.Permission{API: "https://api.example", Name: "read:a"})
	grant := func(id string, roles, orgs []string) {
		u, ok := srv.User(id)
		if !ok {
			t.Fatalf("no user %s", id)
		}
		u.Roles, u.Organizations = roles, orgs
		srv.AddUser(u)
	}
	grant("github|s1", []string{"rol_a", "rol_b"}, []string{"org_x", "org_y"})
	u, _ := srv.User("github|s1")
	u.Permissions = []linkertest.Permission{{API: "https://api.example", Name: "write:x"}, {API: "https://api.example", Name: "read:a"}}
	u.OrganizationRoles = map[string][]string{"org_y": {"rol_b", "rol_p"}}
	srv.AddUser(u)
	grant("github|s3", []string{"rol_a"}, nil)
	grant("auth0|p1", []string{"rol_p"}, nil)
	return srv
}

// grantsOf returns the roles and organizations the tenant holds for id.
func grantsOf(t *testing.T, srv *linkertest.Server, id string) (roles, orgs []string) {
	t.Helper()
	u, ok := srv.User(id)
	if !ok {
		t.Fatalf("%s is not a standalone user", id)
	}
	return u.Roles, u.Organizations
}

func TestRollbackRestoresRolesAndMemberships(t *testing.T) {
	srv := grantsTenant(t)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	sum, err := linkThrough(t, scopedRunner(t, srv, cfg, allGrantScopes...), metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusLinked] != 3 {
		t.Fatalf("link run: %v, %v", err, sum.Counts)
	}
	rec := backupRecord(t, backupPath, 2)
	if !slices.Equal(rec.SecondaryRoles, []string{"rol_a", "rol_b"}) || !slices.Equal(rec.SecondaryOrganizations, []string{"org_x", "org_y"}) || rec.NotRead != nil {
		t.Errorf("backup of line 2: roles %v, organizations %v, not read %v", rec.SecondaryRoles, rec.SecondaryOrganizations, rec.NotRead)
	}
	wantPerms := []linker.Permission{{ResourceServerIdentifier: "https://api.example", PermissionName: "write:x"}, {ResourceServerIdentifier: "https://api.example", PermissionName: "read:a"}}
	if !slices.EqualFunc(rec.SecondaryPermissions, wantPerms, func(a, b linker.Permission) bool {
		return a.ResourceServerIdentifier == b.ResourceServerIdentifier && a.PermissionName == b.PermissionName && len(a.Sources) == 0
	}) {
		t.Errorf("backup of line 2: permissions %+v, want the two assigned directly, without sources", rec.SecondaryPermissions)
	}
	if want := map[string][]string{"org_y": {"rol_b", "rol_p"}}; !maps.EqualFunc(rec.SecondaryOrganizationRoles, want, slices.Equal) {
		t.Errorf("backup of line 2: roles within organizations %v, want %v", rec.SecondaryOrganizationRoles, want)
	}
	if rec := backupRecord(t, backupPath, 4); len(rec.SecondaryPermissions) != 0 {
		t.Errorf("backup of line 4: permissions %+v, want none (its role's come back with the role)", rec.SecondaryPermissions)
	}

	got := rollbackWith(t, scopedRunner(t, srv, DefaultConfig(), allGrantScopes...), backupPath, outPath, nil)
	for line := 2; line <= 4; line++ {
		if got[line].Status != StatusUnlinked || got[line].Error != "" {
			t.Errorf("line %d: %+v, want unlinked", line, got[line])
		}
	}
	want := map[string][2][]string{
		"github|s1": {{"rol_a", "rol_b"}, {"org_x", "org_y"}},
		"github|s2": {nil, nil},
		"github|s3": {{"rol_a"}, nil},
		"auth0|p1":  {{"rol_p"}, nil},
	}
	for id, w := range want {
		roles, orgs := grantsOf(t, srv, id)
		if !slices.Equal(roles, w[0]) || !slices.Equal(orgs, w[1]) {
			t.Errorf("%s after the rollback: roles %v, organizations %v; want %v, %v", id, roles, orgs, w[0], w[1])
		}
	}
	direct := map[string][]linkertest.Permission{
		"github|s1": {{API: "https://api.example", Name: "write:x"}, {API: "https://api.example", Name: "read:a"}},
		"github|s3": nil, // its permission comes with rol_a, not assigned directly
	}
	for id, w := range direct {
		if u, _ := srv.User(id); !slices.Equal(u.Permissions, w) {
			t.Errorf("%s after the rollback: direct permissions %v, want %v", id, u.Permissions, w)
		}
	}
	if u, _ := srv.User("github|s1"); !maps.EqualFunc(u.OrganizationRoles, map[string][]string{"org_y": {"rol_b", "rol_p"}}, slices.Equal) {
		t.Errorf("github|s1 after the rollback: roles within organizations %v, want rol_b and rol_p in org_y", u.OrganizationRoles)
	}
}

func TestRollbackGrantFailureNamesWhatIsMissing(t *testing.T) {
	srv := grantsTenant(t)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	if _, err := linkThrough(t, scopedRunner(t, srv, DefaultConfig(), allGrantScopes...), metadataInput, backupPath, outPath, nil); err != nil {
		t.Fatal(err)
	}
	// The rollback's token may assign roles but not add members.
	got := rollbackWith(t, scopedRunner(t, srv, DefaultConfig(), "read:users", "update:users"), backupPath, outPath, nil)
	if r := got[2]; r.Status != StatusFailed || !strings.Contains(r.Error, "membership of org_x; membership of org_y") || !strings.Contains(r.Error, "github|s1") {
		t.Errorf("line 2: %+v, want failed naming the memberships not restored", r)
	}
	if r := got[4]; r.Status != StatusUnlinked {
		t.Errorf("line 4 (roles only): %+v, want unlinked", r)
	}
	if roles, _ := grantsOf(t, srv, "github|s1"); !slices.Equal(roles, []string{"rol_a", "rol_b"}) {
		t.Errorf("github|s1 roles %v: the roles are restored although the memberships failed", roles)
	}
	// A resumed rollback with the scope finishes the row.
	got = rollbackWith(t, scopedRunner(t, srv, DefaultConfig(), allGrantScopes...), backupPath, outPath, nil)
	if r := got[2]; r.Status != StatusAlreadyUnlinked {
		t.Errorf("second rollback, line 2: %+v", r)
	}
	if _, orgs := grantsOf(t, srv, "github|s1"); !slices.Equal(orgs, []string{"org_x", "org_y"}) {
		t.Errorf("github|s1 organizations %v after the second rollback", orgs)
	}
}

func TestBackupWithoutRoleScopesGoesOn(t *testing.T) {
	srv := grantsTenant(t)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	cfg := DefaultConfig()
	cfg.Workers = 1 // rows in flight at once may each meet the 403 before it is remembered
	r := scopedRunner(t, srv, cfg, "read:users", "update:users", "read:organizations", "create:organization_members", "read:organization_member_roles")
	sum, err := linkThrough(t, r, metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusLinked] != 3 {
		t.Fatalf("link run without read:roles: %v, %v", err, sum.Counts)
	}
	rec := backupRecord(t, backupPath, 2)
	if !slices.Equal(rec.NotRead, []string{NotReadRoles}) || rec.SecondaryRoles != nil || !slices.Equal(rec.SecondaryOrganizations, []string{"org_x", "org_y"}) {
		t.Errorf("backup of line 2: roles %v, organizations %v, not read %v", rec.SecondaryRoles, rec.SecondaryOrganizations, rec.NotRead)
	}
	if st := srv.Stats(); st.ByStatus[403] != 1 {
		t.Errorf("%d answers 403, want 1: the roles are asked for once", st.ByStatus[403])
	}
	got := rollbackWith(t, scopedRunner(t, srv, DefaultConfig(), allGrantScopes...), backupPath, outPath, nil)
	if r := got[2]; r.Status != StatusUnlinked || !strings.Contains(r.Error, "could not read the secondary's roles") {
		t.Errorf("line 2: %+v, want unlinked with a note", r)
	}
	roles, orgs := grantsOf(t, srv, "github|s1")
	if roles != nil || !slices.Equal(orgs, []string{"org_x", "org_y"}) {
		t.Errorf("github|s1: roles %v, organizations %v", roles, orgs)
	}
}

// backupRecord returns the record of line in the backup at path.
func backupRecord(t *testing.T, path string, line int) BackupRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	idx, err := IndexBackup(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := idx.Lookup(line)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
