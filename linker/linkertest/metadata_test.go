package linkertest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// metaUser is a user with metadata at root and nested levels.
func metaUser(id string) linkertest.User {
	return linkertest.User{
		UserID: id, Email: "ann@example.com", EmailVerified: true,
		UserMetadata: map[string]any{"theme": "dark", "addresses": map[string]any{"home": "1 Main St", "work": "2 Mill Rd"}, "n": 1},
		AppMetadata:  map[string]any{"plan": "full", "roles": []any{"a", "b"}},
	}
}

// profile decodes a user document, numbers as json.Number.
func profile(t *testing.T, a answer) map[string]any {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", a.status, a.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(a.body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestPatchMetadataMergesAtRoot(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantUser map[string]any // nil: no user_metadata
		wantApp  map[string]any
	}{
		{"add a key", `{"user_metadata":{"lang":"fr"}}`,
			map[string]any{"theme": "dark", "addresses": map[string]any{"home": "1 Main St", "work": "2 Mill Rd"}, "n": 1.0, "lang": "fr"},
			map[string]any{"plan": "full", "roles": []any{"a", "b"}}},
		{"nested object replaced, not merged", `{"user_metadata":{"addresses":{"home":"3 New St"}}}`,
			map[string]any{"theme": "dark", "addresses": map[string]any{"home": "3 New St"}, "n": 1.0},
			map[string]any{"plan": "full", "roles": []any{"a", "b"}}},
		{"null deletes a key", `{"user_metadata":{"theme":null},"app_metadata":{"roles":null,"tier":2}}`,
			map[string]any{"addresses": map[string]any{"home": "1 Main St", "work": "2 Mill Rd"}, "n": 1.0},
			map[string]any{"plan": "full", "tier": 2.0}},
		{"{} removes user_metadata", `{"user_metadata":{}}`,
			nil, map[string]any{"plan": "full", "roles": []any{"a", "b"}}},
		{"{} removes app_metadata", `{"app_metadata":{}}`,
			map[string]any{"theme": "dark", "addresses": map[string]any{"home": "1 Main St", "work": "2 Mill Rd"}, "n": 1.0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, linkertest.Config{})
			s.AddUser(metaUser("auth0|ann"))
			tok := s.IssueToken(0)
			patched := profile(t, call(t, s, http.MethodPatch, userPath("auth0|ann"), tok, ctJSON, tt.body))
			got := profile(t, getUser(t, s, tok, "auth0|ann"))
			for _, doc := range []map[string]any{patched, got} {
				um, _ := doc["user_metadata"].(map[string]any)
				am, _ := doc["app_metadata"].(map[string]any)
				if !reflect.DeepEqual(um, tt.wantUser) || !reflect.DeepEqual(am, tt.wantApp) {
					t.Errorf("metadata = %v / %v\nwant       %v / %v", um, am, tt.wantUser, tt.wantApp)
				}
			}
			if doc := got; doc["email"] != "ann@example.com" || doc["user_id"] != "auth0|ann" {
				t.Errorf("profile changed: %v", doc)
			}
			wipes := 0
			if tt.wantUser == nil || tt.wantApp == nil {
				wipes = 1
			}
			if st := s.Stats(); st.Patches != 1 || st.MetadataWipes != wipes {
				t.Errorf("stats: %d patches, %d wipes; want 1, %d", st.Patches, st.MetadataWipes, wipes)
			}
		})
	}
}

func TestPatchRefusals(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.AddUser(metaUser("auth0|ann"))
	tok := s.IssueToken(0)
	for _, tt := range []struct {
		body, code, msg string
		status          int
	}{
		{`{}`, "invalid_body", "Too few properties", 400},
		{`{"user_metadata":"x"}`, "invalid_body", "on property user_metadata", 400},
		{`{"user_metadata":null}`, "invalid_body", "found type null", 400},
		{`{"favourite":1}`, "invalid_body", "Additional properties not allowed: favourite", 400},
		{`{"blocked":true}`, "invalid_body", "does not model", 400},
		{`[1]`, "invalid_body", "found type array", 400},
		{`{"user_metadata":{"a":1}} x`, "invalid_body", "Invalid JSON", 400},
	} {
		call(t, s, http.MethodPatch, userPath("auth0|ann"), tok, ctJSON, tt.body).want(t, tt.status, tt.code, tt.msg)
	}
	call(t, s, http.MethodPatch, userPath("auth0|nobody"), tok, ctJSON, `{"user_metadata":{"a":1}}`).
		want(t, http.StatusNotFound, "inexistent_user", "User not found.")
	readOnly := s.IssueToken(0, "read:users")
	call(t, s, http.MethodPatch, userPath("auth0|ann"), readOnly, ctJSON, `{"user_metadata":{"a":1}}`).
		want(t, http.StatusForbidden, "insufficient_scope", "update:users")
	if u, _ := s.User("auth0|ann"); !reflect.DeepEqual(u.UserMetadata, metaUser("").UserMetadata) {
		t.Errorf("a refused patch changed the metadata: %v", u.UserMetadata)
	}
}

func unlinkPath(primary, provider, userID string) string {
	return userPath(primary) + "/identities/" + url.PathEscape(provider) + "/" + url.PathEscape(userID)
}

func TestUnlinkRecreatesWithoutMetadata(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.AddUser(metaUser("auth0|ann"))
	sec := metaUser("samlp|acme|ann@acme.com")
	sec.Email = "ann@acme.com"
	s.AddUser(sec)
	tok := s.IssueToken(0)
	link(t, s, tok, "auth0|ann", "samlp", "acme|ann@acme.com").identities(t)
	getUser(t, s, tok, "samlp|acme|ann@acme.com").want(t, http.StatusNotFound, "inexistent_user", "User not found.")

	a := call(t, s, http.MethodDelete, unlinkPath("auth0|ann", "samlp", "acme|ann@acme.com"), tok, "", "")
	if a.status != http.StatusOK {
		t.Fatalf("unlink = %d %s", a.status, a.body)
	}
	var left []identity
	if err := json.Unmarshal(a.body, &left); err != nil || len(left) != 1 || left[0].Provider != "auth0" {
		t.Fatalf("identities left = %s (%v), want the primary's own", a.body, err)
	}
	back := profile(t, getUser(t, s, tok, "samlp|acme|ann@acme.com"))
	if _, has := back["user_metadata"]; has {
		t.Errorf("recreated user has user_metadata: %v", back)
	}
	if _, has := back["app_metadata"]; has {
		t.Errorf("recreated user has app_metadata: %v", back)
	}
	if back["email"] != "ann@acme.com" || back["email_verified"] != true {
		t.Errorf("recreated user = %v, want its email from the linked profile", back)
	}
	if p := profile(t, getUser(t, s, tok, "auth0|ann")); p["user_metadata"] == nil {
		t.Error("the primary lost its metadata")
	}
	if _, linked := s.LinkedTo("samlp|acme|ann@acme.com"); linked {
		t.Error("LinkedTo still reports the unlinked account")
	}
	if st := s.Stats(); st.Unlinks != 1 {
		t.Errorf("stats: %d unlinks, want 1", st.Unlinks)
	}
	// It can be linked again.
	link(t, s, tok, "auth0|ann", "samlp", "acme|ann@acme.com").identities(t)

	// Refusals.
	call(t, s, http.MethodDelete, unlinkPath("auth0|ann", "auth0", "ann"), tok, "", "").
		want(t, http.StatusBadRequest, "operation_not_supported", "Main identity cannot be removed.")
	call(t, s, http.MethodDelete, unlinkPath("auth0|ann", "github", "404"), tok, "", "").
		want(t, http.StatusNotFound, "inexistent_identity", "does not exist")
	call(t, s, http.MethodDelete, unlinkPath("auth0|nobody", "github", "1"), tok, "", "").
		want(t, http.StatusNotFound, "inexistent_user", "User not found.")
	call(t, s, http.MethodDelete, unlinkPath("auth0|ann", "nope", "1"), tok, "", "").
		want(t, http.StatusBadRequest, "invalid_uri", "provider")
	call(t, s, http.MethodDelete, unlinkPath("auth0|ann", "samlp", "acme|ann@acme.com"), s.IssueToken(0, "read:users"), "", "").
		want(t, http.StatusForbidden, "insufficient_scope", "update:users")
}

func TestLinkDiscardsSecondaryMetadata(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.AddUser(linkertest.User{UserID: "auth0|p", Email: "p@x.io", EmailVerified: true, UserMetadata: map[string]any{"mine": true}})
	s.AddUser(metaUser("github|7"))
	tok := s.IssueToken(0)
	link(t, s, tok, "auth0|p", "github", "7").identities(t)
	p := profile(t, getUser(t, s, tok, "auth0|p"))
	if !reflect.DeepEqual(p["user_metadata"], map[string]any{"mine": true}) || p["app_metadata"] != nil {
		t.Errorf("primary metadata after link = %v / %v, want its own only", p["user_metadata"], p["app_metadata"])
	}
}

func TestUserCopiesMetadata(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	u := metaUser("auth0|ann")
	s.AddUser(u)
	u.UserMetadata["addresses"].(map[string]any)["home"] = "changed"
	got, _ := s.User("auth0|ann")
	got.UserMetadata["theme"] = "changed"
	again, _ := s.User("auth0|ann")
	if again.UserMetadata["theme"] != "dark" || again.UserMetadata["addresses"].(map[string]any)["home"] != "1 Main St" {
		t.Errorf("the tenant's metadata is shared with callers: %v", again.UserMetadata)
	}
}
