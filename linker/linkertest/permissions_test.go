package linkertest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// TestPermissionsStrictAndDroppedByUnlink: the permission endpoints refuse
// what the Management API refuses, answer 201 with no body, keep one copy
// of a permission assigned twice, and an unlink recreates the secondary
// without the permissions it had.
func TestPermissionsStrictAndDroppedByUnlink(t *testing.T) {
	s := grantTenant(t)
	u, _ := s.User("github|s")
	u.Permissions = []linkertest.Permission{{API: "https://api", Name: "read:x"}}
	s.AddUser(u)
	tok := s.IssueToken(time.Hour, grantScopes...)
	path := userPath("github|s") + "/permissions"
	one := `{"permissions":[{"resource_server_identifier":"https://api","permission_name":"write:y"}]}`
	for _, body := range []string{
		`{"permissions":[]}`,
		`{"permissions":[{"resource_server_identifier":"https://api"}]}`,
		`{"permissions":[{"resource_server_identifier":"https://api","permission_name":"a","sources":[]}]}`,
		`{"permissions":"x"}`,
		`{"roles":["rol_a"]}`,
		one + `x`,
	} {
		call(t, s, http.MethodPost, path, tok, ctJSON, body).want(t, http.StatusBadRequest, "invalid_body", "")
	}
	weak := s.IssueToken(time.Hour, "read:users")
	call(t, s, http.MethodPost, path, weak, ctJSON, one).want(t, http.StatusForbidden, "insufficient_scope", "")
	call(t, s, http.MethodGet, path, s.IssueToken(time.Hour, "update:users"), "", "").want(t, http.StatusForbidden, "insufficient_scope", "")
	for range 2 {
		if a := call(t, s, http.MethodPost, path, tok, ctJSON, one); a.status != http.StatusCreated || len(a.body) != 0 {
			t.Fatalf("assign: %d %s", a.status, a.body)
		}
	}
	u, _ = s.User("github|s")
	if want := []linkertest.Permission{{API: "https://api", Name: "read:x"}, {API: "https://api", Name: "write:y"}}; !slices.Equal(u.Permissions, want) {
		t.Errorf("permissions %v, want %v", u.Permissions, want)
	}

	if a := link(t, s, tok, "auth0|p", "github", "s"); a.status != http.StatusCreated {
		t.Fatalf("link: %d %s", a.status, a.body)
	}
	if a := call(t, s, http.MethodDelete, userPath("auth0|p")+"/identities/github/s", tok, "", ""); a.status != http.StatusOK {
		t.Fatalf("unlink: %d %s", a.status, a.body)
	}
	if u, ok := s.User("github|s"); !ok || len(u.Permissions) != 0 {
		t.Errorf("recreated secondary: %+v, %v; want no permissions", u, ok)
	}
}

// TestMemberRolesStrictAndDroppedByUnlink: roles within an organization
// are refused to a non-member, for an unknown role or organization, and
// without the scope; an unlink recreates the secondary without them.
func TestMemberRolesStrictAndDroppedByUnlink(t *testing.T) {
	s := grantTenant(t)
	tok := s.IssueToken(time.Hour, append(grantScopes, "read:organization_member_roles", "create:organization_member_roles")...)
	path := "/api/v2/organizations/org_x/members/" + url.PathEscape("github|s") + "/roles"
	s.Seed("github|t")
	call(t, s, http.MethodPost, "/api/v2/organizations/org_x/members/"+url.PathEscape("github|t")+"/roles", tok, ctJSON, `{"roles":["rol_a"]}`).want(t, http.StatusBadRequest, "invalid_body", "")
	call(t, s, http.MethodPost, "/api/v2/organizations/org_nope/members/"+url.PathEscape("github|s")+"/roles", tok, ctJSON, `{"roles":["rol_a"]}`).want(t, http.StatusNotFound, "inexistent_organization", "")
	call(t, s, http.MethodPost, path, tok, ctJSON, `{"roles":["rol_z"]}`).want(t, http.StatusNotFound, "inexistent_role", "")
	call(t, s, http.MethodPost, path, tok, ctJSON, `{"roles":[]}`).want(t, http.StatusBadRequest, "invalid_body", "")
	call(t, s, http.MethodPost, path, s.IssueToken(time.Hour, grantScopes...), ctJSON, `{"roles":["rol_a"]}`).want(t, http.StatusForbidden, "insufficient_scope", "")
	call(t, s, http.MethodGet, path, s.IssueToken(time.Hour, grantScopes...), "", "").want(t, http.StatusForbidden, "insufficient_scope", "")
	if a := call(t, s, http.MethodPost, path, tok, ctJSON, `{"roles":["rol_a"]}`); a.status != http.StatusNoContent {
		t.Fatalf("assign: %d %s", a.status, a.body)
	}
	a := call(t, s, http.MethodGet, path+"?include_totals=true", tok, "", "")
	var page struct {
		Roles []struct{ ID string }
		Total int
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &page) != nil || page.Total != 1 || page.Roles[0].ID != "rol_a" {
		t.Fatalf("member roles: %d %s", a.status, a.body)
	}
	if a := link(t, s, tok, "auth0|p", "github", "s"); a.status != http.StatusCreated {
		t.Fatalf("link: %d %s", a.status, a.body)
	}
	if a := call(t, s, http.MethodDelete, userPath("auth0|p")+"/identities/github/s", tok, "", ""); a.status != http.StatusOK {
		t.Fatalf("unlink: %d %s", a.status, a.body)
	}
	if u, ok := s.User("github|s"); !ok || len(u.OrganizationRoles) != 0 || len(u.Organizations) != 0 {
		t.Errorf("recreated secondary: %+v, %v; want no memberships or roles within them", u, ok)
	}
}
