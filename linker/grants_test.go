package linker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
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
