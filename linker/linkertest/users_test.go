package linkertest_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

func TestGetUserFields(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|u")
	tok := s.IssueToken(0)
	all := []string{"email", "email_verified", "identities", "user_id"}

	tests := []struct {
		give string // query
		want []string
	}{
		{"", all},
		{"?fields=", all},
		{"?fields=user_id,email", []string{"email", "user_id"}},
		{"?fields=user_id,%20email&include_fields=true", []string{"email", "user_id"}},
		{"?fields=identities&include_fields=false", []string{"email", "email_verified", "user_id"}},
		{"?fields=identities,user_id,email,email_verified&include_fields=false", []string{}},
		{"?fields=nickname", []string{}},
		{"?include_fields=false", all},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			a := call(t, s, http.MethodGet, userPath("auth0|u")+tt.give, tok, "", "")
			var doc map[string]any
			if err := json.Unmarshal(a.body, &doc); err != nil || a.status != http.StatusOK {
				t.Fatalf("GET = %d %s (%v)", a.status, a.body, err)
			}
			var got []string
			for k := range doc {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("fields = %v, want %v", got, tt.want)
			}
		})
	}

	a := call(t, s, http.MethodGet, userPath("auth0|u")+"?include_fields=maybe", tok, "", "")
	a.want(t, http.StatusBadRequest, "invalid_query_string", "include_fields")
	getUser(t, s, tok, "auth0|nobody").want(t, http.StatusNotFound, "inexistent_user", "User not found.")
}

func TestGetUser(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("samlp|acme|Bob@Acme.com")
	a := getUser(t, s, s.IssueToken(0), "samlp|acme|Bob@Acme.com")
	var u struct {
		UserID        string     `json:"user_id"`
		Email         string     `json:"email"`
		EmailVerified bool       `json:"email_verified"`
		Identities    []identity `json:"identities"`
	}
	if err := json.Unmarshal(a.body, &u); err != nil {
		t.Fatal(err)
	}
	want := identity{Connection: "acme", UserID: "acme|Bob@Acme.com", Provider: "samlp"}
	if u.UserID != "samlp|acme|Bob@Acme.com" || u.Email != "bob@acme.com" || !u.EmailVerified ||
		len(u.Identities) != 1 || u.Identities[0].Connection != want.Connection || u.Identities[0].UserID != want.UserID ||
		u.Identities[0].Provider != want.Provider || u.Identities[0].IsSocial {
		t.Errorf("user = %+v", u)
	}
}

func TestIdPTokens(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := newServer(t, linkertest.Config{IdPTokens: on})
		s.Seed("auth0|p", "github|9")
		tok := s.IssueToken(0)
		answers := []answer{link(t, s, tok, "auth0|p", "github", "9"), getUser(t, s, tok, "auth0|p")}
		for _, a := range answers {
			if got := strings.Count(string(a.body), `"idp-secret-`); got != 6*boolInt(on) {
				t.Errorf("IdPTokens %v: %d IdP secrets in %s, want %d", on, got, a.body, 6*boolInt(on))
			}
		}
		if on {
			ids := answers[0].identities(t)
			if !strings.HasPrefix(ids[1].AccessToken, "idp-secret-") || !strings.HasPrefix(ids[1].RefreshToken, "idp-secret-") ||
				!strings.HasPrefix(ids[1].AccessTokenSecret, "idp-secret-") {
				t.Errorf("identity = %+v", ids[1])
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSeed(t *testing.T) {
	tests := []struct {
		give      string
		want      linkertest.Identity
		wantEmail string
	}{
		{"auth0|64b0", linkertest.Identity{Provider: "auth0", UserID: "64b0", Connection: "Username-Password-Authentication"}, "64b0@example.com"},
		{"google-oauth2|1077", linkertest.Identity{Provider: "google-oauth2", UserID: "1077", Connection: "google-oauth2", IsSocial: true}, "1077@example.com"},
		{"samlp|acme|bob@acme.com", linkertest.Identity{Provider: "samlp", UserID: "acme|bob@acme.com", Connection: "acme"}, "bob@acme.com"},
		{"waad|contoso.com|x1", linkertest.Identity{Provider: "waad", UserID: "contoso.com|x1", Connection: "contoso.com"}, "x1@example.com"},
		{"oauth2|paratext|W0", linkertest.Identity{Provider: "oauth2", UserID: "paratext|W0", Connection: "paratext", IsSocial: true}, "w0@example.com"},
		{"oidc|conn|google-oauth2|123", linkertest.Identity{Provider: "oidc", UserID: "conn|google-oauth2|123", Connection: "conn"}, "123@example.com"},
		{"okta|single", linkertest.Identity{Provider: "okta", UserID: "single", Connection: "okta"}, "single@example.com"},
		{"email|5f1", linkertest.Identity{Provider: "email", UserID: "5f1", Connection: "email"}, "5f1@example.com"},
		{"auth0|with space/and%", linkertest.Identity{Provider: "auth0", UserID: "with space/and%", Connection: "Username-Password-Authentication"}, "with-space-and@example.com"},
	}
	s := newServer(t, linkertest.Config{IdPTokens: true})
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			s.Seed(tt.give)
			u, ok := s.User(tt.give)
			if !ok {
				t.Fatal("not created")
			}
			if len(u.Identities) != 1 || u.Email != tt.wantEmail || !u.EmailVerified || u.UserID != tt.give {
				t.Fatalf("user = %+v", u)
			}
			got := u.Identities[0]
			got.AccessToken, got.RefreshToken, got.AccessTokenSecret = "", "", ""
			if got.Provider != tt.want.Provider || got.UserID != tt.want.UserID || got.Connection != tt.want.Connection ||
				got.IsSocial != tt.want.IsSocial || got.ProfileData != nil {
				t.Errorf("identity = %+v, want %+v", got, tt.want)
			}
		})
	}

	// Idempotent, and never resurrects a linked secondary.
	before, _ := s.User("auth0|64b0")
	s.Seed("auth0|64b0")
	if after, _ := s.User("auth0|64b0"); before.Identities[0].AccessToken == "" ||
		after.Identities[0].AccessToken != before.Identities[0].AccessToken {
		t.Error("seeding again replaced the user")
	}
	link(t, s, s.IssueToken(0), "auth0|64b0", "google-oauth2", "1077").identities(t)
	s.Seed("google-oauth2|1077")
	if _, ok := s.User("google-oauth2|1077"); ok {
		t.Error("Seed resurrected a linked secondary")
	}
	for _, bad := range []string{"", "nopipe", "|x", "auth0|", "auth0|a\nb"} {
		s.Seed(bad)
		if _, ok := s.User(bad); ok {
			t.Errorf("Seed(%q) created a user", bad)
		}
	}
}

func TestAddUser(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	give := linkertest.User{UserID: "auth0|a", Email: "a@corp.example", Identities: []linkertest.Identity{
		{Provider: "auth0", UserID: "a", Connection: "corp-db", ProfileData: map[string]any{"name": "A"}},
	}}
	s.AddUser(give)
	give.Identities[0].Connection = "changed by the caller"
	u, _ := s.User("auth0|a")
	if u.Identities[0].Connection != "corp-db" || u.Email != "a@corp.example" || u.EmailVerified {
		t.Errorf("user = %+v", u)
	}
	u.Identities[0].ProfileData["name"] = "changed by the caller"
	if again, _ := s.User("auth0|a"); again.Identities[0].ProfileData["name"] != "A" {
		t.Error("User returned shared state")
	}

	s.AddUser(linkertest.User{UserID: "github|7"})
	if u, ok := s.User("github|7"); !ok || u.Identities[0].Connection != "github" {
		t.Errorf("derived user = %+v", u)
	}
	ids := link(t, s, s.IssueToken(0), "auth0|a", "github", "7").identities(t)
	if ids[0].Connection != "corp-db" || ids[0].ProfileData["name"] != "A" || ids[1].ProfileData["email_verified"] != false {
		t.Errorf("identities = %+v", ids)
	}
}

func TestUnknownPathsAnswer404(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|u")
	tok := s.IssueToken(0)
	tests := []struct{ method, path string }{
		{http.MethodGet, "/"},
		{http.MethodGet, "/api/v2/"},
		{http.MethodGet, "/api/v2/users"},
		{http.MethodGet, "/api/v2/users/"},
		{http.MethodGet, "/api/v2/clients"},
		{http.MethodGet, "/api/v2/users/auth0%7Cu/identities"},
		{http.MethodPost, "/api/v2/users/auth0%7Cu"},
		{http.MethodPut, "/api/v2/users/auth0%7Cu"},
		{http.MethodDelete, "/api/v2/users/auth0%7Cu/identities/auth0/x"},
		{http.MethodGet, "/api/v2/users/auth0%7Cu/extra"},
		{http.MethodGet, "/api/v1/users/auth0%7Cu"},
		{http.MethodPost, "/oauth/token/extra"},
	}
	for _, tt := range tests {
		a := call(t, s, tt.method, tt.path, tok, ctJSON, `{}`)
		if a.status != http.StatusNotFound {
			t.Errorf("%s %s = %d, want 404", tt.method, tt.path, a.status)
			continue
		}
		a.apiErr(t)
	}
}
