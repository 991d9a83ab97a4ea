package linker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

func TestUserRolesAndOrganizationsRoundTrip(t *testing.T) {
	s, c, tok := fakeTenant(t, "read:users", "update:users", "read:roles", "read:organizations", "create:organization_members")
	ctx := context.Background()
	var roles []string
	for i := range 150 { // more than a page
		id := fmt.Sprintf("rol_%03d", i)
		s.AddRole(id, id)
		roles = append(roles, id)
	}
	s.AddOrganization("org_x", "x")
	s.Seed("github|s")

	// Assign in two requests: one list may be long, but not unbounded.
	if _, err := c.AssignRoles(ctx, "github|s", roles[:100]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AssignRoles(ctx, "github|s", roles[100:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddOrganizationMembers(ctx, "org_x", []string{"github|s"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for page := 0; ; page++ {
		p, _, err := c.UserRoles(ctx, "github|s", page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Items {
			got = append(got, r.ID)
		}
		if p.Total != 150 || p.Limit != linker.PerPage {
			t.Errorf("page %d: total %d, limit %d", page, p.Total, p.Limit)
		}
		if !p.More() {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(roles, ",") {
		t.Errorf("read %d roles back, want the 150 assigned", len(got))
	}
	orgs, _, err := c.UserOrganizations(ctx, "github|s", 0)
	if err != nil || len(orgs.Items) != 1 || orgs.Items[0].ID != "org_x" || orgs.More() {
		t.Errorf("organizations: %+v, %v", orgs, err)
	}

	// Refused before anything is sent.
	if _, err := c.AssignRoles(ctx, "github|s", nil); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("no roles: %v", err)
	}
	if _, err := c.AddOrganizationMembers(ctx, "org_x", make([]string, 11)); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("11 members: %v", err)
	}
	// A 404 is typed, and no error carries the token.
	_, err = c.AssignRoles(ctx, "github|s", []string{"rol_nope"})
	if !linker.IsNotFound(err) || strings.Contains(err.Error(), tok) {
		t.Errorf("unknown role: %v", err)
	}
}

func TestUserRolesForbiddenWithoutScope(t *testing.T) {
	s, c, tok := fakeTenant(t, "read:users", "update:users")
	s.Seed("github|s")
	_, _, err := c.UserRoles(context.Background(), "github|s", 0)
	if !linker.IsForbidden(err) || !strings.Contains(err.Error(), "get roles of github|s") || strings.Contains(err.Error(), tok) {
		t.Errorf("roles without read:roles: %v", err)
	}
	_, _, err = c.UserOrganizations(context.Background(), "github|s", 0)
	if !linker.IsForbidden(err) {
		t.Errorf("organizations without read:organizations: %v", err)
	}
}

// TestUserPermissionsRoundTrip: permissions assigned directly come back
// with a DIRECT source, those of a role with a ROLE source, one held both
// ways once with both; more than a page is read page by page.
func TestUserPermissionsRoundTrip(t *testing.T) {
	s, c, tok := fakeTenant(t, "read:users", "update:users", "read:roles")
	ctx := context.Background()
	s.AddRole("rol_a", "admin")
	s.AddRolePermissions("rol_a", linkertest.Permission{API: "https://api.example", Name: "read:all"}, linkertest.Permission{API: "https://api.example", Name: "perm:007"})
	s.AddUser(linkertest.User{UserID: "github|s", Roles: []string{"rol_a"}})
	var direct []linker.Permission
	for i := range 120 {
		direct = append(direct, linker.Permission{ResourceServerIdentifier: "https://api.example", PermissionName: fmt.Sprintf("perm:%03d", i)})
	}
	if _, err := c.AssignPermissions(ctx, "github|s", direct); err != nil {
		t.Fatal(err)
	}
	// Again: nothing changes.
	if _, err := c.AssignPermissions(ctx, "github|s", direct[:3]); err != nil {
		t.Fatal(err)
	}
	got := map[string]linker.Permission{}
	for page := 0; ; page++ {
		p, _, err := c.UserPermissions(ctx, "github|s", page)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range p.Items {
			got[x.PermissionName] = x
		}
		if p.Total != 121 {
			t.Errorf("page %d: total %d, want 121 (120 direct, one more through the role)", page, p.Total)
		}
		if !p.More() {
			break
		}
	}
	if len(got) != 121 {
		t.Fatalf("read %d permissions, want 121", len(got))
	}
	if p := got["perm:050"]; !p.Direct() || p.ResourceServerIdentifier != "https://api.example" {
		t.Errorf("perm:050: %+v, want direct", p)
	}
	if p := got["read:all"]; p.Direct() || len(p.Sources) != 1 || p.Sources[0].SourceType != linker.PermissionFromRole || p.Sources[0].SourceID != "rol_a" {
		t.Errorf("read:all: %+v, want held through rol_a only", p)
	}
	if p := got["perm:007"]; !p.Direct() || len(p.Sources) != 2 {
		t.Errorf("perm:007: %+v, want held directly and through the role", p)
	}

	// Refused before anything is sent.
	if _, err := c.AssignPermissions(ctx, "github|s", nil); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("no permissions: %v", err)
	}
	if _, err := c.AssignPermissions(ctx, "github|s", []linker.Permission{{PermissionName: "x"}}); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("a permission without its API: %v", err)
	}
	// Without update:users: 403, typed, without the token.
	tok2 := s.IssueToken(0, "read:users")
	base, err := linker.ParseDomain(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := linker.NewClient(base, linker.StaticToken(tok2), linker.WithHTTPClient(s.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.AssignPermissions(ctx, "github|s", direct[:1]); !linker.IsForbidden(err) || strings.Contains(err.Error(), tok2) || strings.Contains(err.Error(), tok) {
		t.Errorf("assign without update:users: %v", err)
	}
}

// TestOrganizationMemberRolesRoundTrip: roles assigned to a member within
// an organization are read back page by page; a user who is not a member
// is refused, and so is a token without the scopes.
func TestOrganizationMemberRolesRoundTrip(t *testing.T) {
	s, c, tok := fakeTenant(t, "read:users", "create:organization_members", "read:organization_member_roles", "create:organization_member_roles")
	ctx := context.Background()
	var roles []string
	for i := range 105 {
		id := fmt.Sprintf("rol_%03d", i)
		s.AddRole(id, id)
		roles = append(roles, id)
	}
	s.AddOrganization("org_x", "x")
	s.Seed("github|s", "github|t")
	if _, err := c.AssignOrganizationMemberRoles(ctx, "org_x", "github|s", roles[:1]); linker.StatusOf(err) != 400 {
		t.Errorf("roles of a non-member: %v, want 400", err)
	}
	if _, err := c.AddOrganizationMembers(ctx, "org_x", []string{"github|s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AssignOrganizationMemberRoles(ctx, "org_x", "github|s", roles); err != nil {
		t.Fatal(err)
	}
	var got []string
	for page := 0; ; page++ {
		p, _, err := c.OrganizationMemberRoles(ctx, "org_x", "github|s", page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Items {
			got = append(got, r.ID)
		}
		if !p.More() {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(roles, ",") {
		t.Errorf("read %d roles back, want the 105 assigned", len(got))
	}
	if _, err := c.AssignOrganizationMemberRoles(ctx, "org_x", "github|s", nil); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("no roles: %v", err)
	}
	_, _, err := c.OrganizationMemberRoles(ctx, "org_nope", "github|s", 0)
	if !linker.IsNotFound(err) || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "in organization org_nope") {
		t.Errorf("unknown organization: %v", err)
	}
}
