package linkertest_test

import (
	"net/http"
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
