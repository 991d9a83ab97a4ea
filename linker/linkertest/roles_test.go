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

// grantTenant is a tenant with two roles, two organizations and the pair
// auth0|p / github|s, the secondary holding both roles and organizations.
func grantTenant(t *testing.T) *linkertest.Server {
	t.Helper()
	s := newServer(t, linkertest.Config{})
	s.AddRole("rol_a", "admin")
	s.AddRole("rol_b", "billing")
	s.AddOrganization("org_x", "x")
	s.AddOrganization("org_y", "y")
	s.Seed("auth0|p")
	s.AddUser(linkertest.User{UserID: "github|s", Email: "s@example.com", EmailVerified: true,
		Roles: []string{"rol_a", "rol_b"}, Organizations: []string{"org_x", "org_y"}})
	return s
}

var grantScopes = []string{"read:users", "update:users", "read:roles", "read:organizations", "create:organization_members"}

func TestRolesPagedAndStrict(t *testing.T) {
	s := grantTenant(t)
	tok := s.IssueToken(time.Hour, grantScopes...)
	path := userPath("github|s") + "/roles"

	a := call(t, s, http.MethodGet, path+"?page=1&per_page=1&include_totals=true", tok, "", "")
	var page struct {
		Roles               []struct{ ID, Name string }
		Start, Limit, Total int
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &page) != nil {
		t.Fatalf("paged roles: %d %s", a.status, a.body)
	}
	if len(page.Roles) != 1 || page.Roles[0].ID != "rol_b" || page.Start != 1 || page.Limit != 1 || page.Total != 2 {
		t.Errorf("page 1 of 1: %+v", page)
	}
	a = call(t, s, http.MethodGet, path, tok, "", "")
	var bare []struct{ ID string }
	if a.status != http.StatusOK || json.Unmarshal(a.body, &bare) != nil || len(bare) != 2 {
		t.Errorf("roles without totals: %d %s", a.status, a.body)
	}
	for _, q := range []string{"?per_page=101", "?per_page=0", "?page=-1", "?include_totals=yes", "?page=x"} {
		call(t, s, http.MethodGet, path+q, tok, "", "").want(t, http.StatusBadRequest, "invalid_query_string", "")
	}
	// Without read:roles the roles are refused, and so are the
	// organizations without read:organizations.
	weak := s.IssueToken(time.Hour, "read:users", "update:users")
	call(t, s, http.MethodGet, path, weak, "", "").want(t, http.StatusForbidden, "insufficient_scope", "")
	call(t, s, http.MethodGet, userPath("github|s")+"/organizations", weak, "", "").want(t, http.StatusForbidden, "insufficient_scope", "")
}

func TestUnlinkDropsRolesAndMemberships(t *testing.T) {
	s := grantTenant(t)
	tok := s.IssueToken(time.Hour, grantScopes...)
	if a := link(t, s, tok, "auth0|p", "github", "s"); a.status != http.StatusCreated {
		t.Fatalf("link: %d %s", a.status, a.body)
	}
	if a := call(t, s, http.MethodDelete, userPath("auth0|p")+"/identities/github/s", tok, "", ""); a.status != http.StatusOK {
		t.Fatalf("unlink: %d %s", a.status, a.body)
	}
	u, ok := s.User("github|s")
	if !ok || len(u.Roles) != 0 || len(u.Organizations) != 0 {
		t.Fatalf("recreated secondary: %+v, %v; want no roles or memberships", u, ok)
	}

	roles := userPath("github|s") + "/roles"
	call(t, s, http.MethodPost, roles, tok, ctJSON, `{"roles":[]}`).want(t, http.StatusBadRequest, "invalid_body", "")
	call(t, s, http.MethodPost, roles, tok, ctJSON, `{"roles":["rol_z"]}`).want(t, http.StatusNotFound, "inexistent_role", "")
	call(t, s, http.MethodPost, roles, tok, ctJSON, `{"roles":["rol_a"],"x":1}`).want(t, http.StatusBadRequest, "invalid_body", "")
	for range 2 { // granting twice changes nothing
		if a := call(t, s, http.MethodPost, roles, tok, ctJSON, `{"roles":["rol_a","rol_b"]}`); a.status != http.StatusNoContent || len(a.body) != 0 {
			t.Fatalf("assign roles: %d %s", a.status, a.body)
		}
		members := "/api/v2/organizations/" + url.PathEscape("org_x") + "/members"
		if a := call(t, s, http.MethodPost, members, tok, ctJSON, `{"members":["github|s"]}`); a.status != http.StatusNoContent {
			t.Fatalf("add member: %d %s", a.status, a.body)
		}
	}
	call(t, s, http.MethodPost, "/api/v2/organizations/org_nope/members", tok, ctJSON, `{"members":["github|s"]}`).want(t, http.StatusNotFound, "inexistent_organization", "")
	call(t, s, http.MethodPost, "/api/v2/organizations/org_x/members", tok, ctJSON, `{"members":["auth0|ghost"]}`).want(t, http.StatusBadRequest, "invalid_body", "")
	u, _ = s.User("github|s")
	if !slices.Equal(u.Roles, []string{"rol_a", "rol_b"}) || !slices.Equal(u.Organizations, []string{"org_x"}) {
		t.Errorf("after the grants: roles %v, organizations %v", u.Roles, u.Organizations)
	}
}
