package linkertest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

func TestLinkRejectsInvalidBodies(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|primary", "auth0|1")
	tok := s.IssueToken(0)
	const valid = `{"provider":"auth0","user_id":"1"}`

	tests := []struct {
		name  string
		ctype string
		give  string
		want  string // part of the message
	}{
		{"empty object", ctJSON, `{}`, "'Too few properties defined (0), minimum 1'"},
		{"unknown property", ctJSON, `{"provider":"auth0","user_id":"1","extra":1}`, "'Additional properties not allowed: extra'."},
		{"unknown property alone", ctJSON, `{"email":"a@b.c"}`, "Additional properties not allowed: email"},
		{"array", ctJSON, `[]`, "found type array"},
		{"string", ctJSON, `"auth0|1"`, "found type string"},
		{"null", ctJSON, `null`, "found type null"},
		{"empty body", ctJSON, ``, "found type null"},
		{"truncated JSON", ctJSON, `{"provider":`, "Invalid JSON"},
		{"trailing data", ctJSON, valid + ` {}`, "Invalid JSON"},
		{"provider not in enum", ctJSON, `{"provider":"myspace","user_id":"1"}`, "'No enum match' on property provider"},
		{"provider number", ctJSON, `{"provider":1,"user_id":"1"}`, "found type integer' on property provider"},
		{"provider null", ctJSON, `{"provider":null,"user_id":"1"}`, "found type null' on property provider"},
		{"user_id empty", ctJSON, `{"provider":"auth0","user_id":""}`, "on property user_id"},
		{"user_id fraction", ctJSON, `{"provider":"auth0","user_id":1.5}`, "on property user_id"},
		{"user_id exponent", ctJSON, `{"provider":"auth0","user_id":1e3}`, "on property user_id"},
		{"user_id bool", ctJSON, `{"provider":"auth0","user_id":true}`, "on property user_id"},
		{"user_id object", ctJSON, `{"provider":"auth0","user_id":{}}`, "on property user_id"},
		{"provider without user_id", ctJSON, `{"provider":"auth0"}`, "Missing required property: user_id"},
		{"user_id without provider", ctJSON, `{"user_id":"1"}`, "Missing required property: provider"},
		{"connection_id alone", ctJSON, `{"connection_id":"con_0123456789abcdef"}`, "Missing required property: provider"},
		{"connection_id too short", ctJSON, `{"provider":"auth0","user_id":"1","connection_id":"con_short"}`, "pattern"},
		{"connection_id bad prefix", ctJSON, `{"provider":"auth0","user_id":"1","connection_id":"cxn_0123456789abcdef"}`, "pattern"},
		{"connection_id number", ctJSON, `{"provider":"auth0","user_id":"1","connection_id":7}`, "on property connection_id"},
		{"link_with with provider", ctJSON, `{"link_with":"x","provider":"auth0"}`, "link_with must be sent alone"},
		{"link_with with all", ctJSON, `{"link_with":"x","provider":"auth0","user_id":"1"}`, "link_with must be sent alone"},
		{"link_with number", ctJSON, `{"link_with":5}`, "on property link_with"},
		{"text/plain", "text/plain", valid, "Unsupported Content-Type"},
		{"no Content-Type", "", valid, "Unsupported Content-Type"},
		{"form unknown property", ctForm, "provider=auth0&user_id=1&foo=bar", "Additional properties not allowed: foo"},
		{"form repeated property", ctForm, "provider=auth0&provider=auth0&user_id=1", "found type array' on property provider"},
		{"form empty", ctForm, "", "Too few properties"},
		{"form empty user_id", ctForm, "provider=auth0&user_id=", "on property user_id"},
		{"form bad escape", ctForm, "provider=%zz", "Invalid form body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, s, http.MethodPost, linkPath("auth0|primary"), tok, tt.ctype, tt.give)
			a.want(t, http.StatusBadRequest, "invalid_body", tt.want)
			if e := a.apiErr(t); !strings.HasPrefix(e.Message, "Payload validation error: ") {
				t.Errorf("message %q lacks the validation prefix", e.Message)
			}
		})
	}
	if _, linked := s.LinkedTo("auth0|1"); linked {
		t.Error("an invalid body linked the secondary")
	}
	if st := s.Stats(); st.LinksApplied != 0 || st.ByStatus[400] != len(tests) {
		t.Errorf("stats = %+v, want no link and %d answers 400", st, len(tests))
	}
}

func TestLinkAcceptsSchemaVariants(t *testing.T) {
	tests := []struct {
		name  string
		ctype string
		give  string
	}{
		{"JSON", ctJSON, `{"provider":"google-oauth2","user_id":"1077"}`},
		{"JSON with charset", "application/json; charset=utf-8", `{"provider":"google-oauth2","user_id":"1077"}`},
		{"integer user_id", ctJSON, `{"provider":"google-oauth2","user_id":1077}`},
		{"connection_id", ctJSON, `{"provider":"google-oauth2","user_id":"1077","connection_id":"con_0123456789abcdEF"}`},
		{"form", ctForm, "provider=google-oauth2&user_id=1077"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, linkertest.Config{})
			s.Seed("auth0|p", "google-oauth2|1077")
			a := call(t, s, http.MethodPost, linkPath("auth0|p"), s.IssueToken(0), tt.ctype, tt.give)
			if ids := a.identities(t); len(ids) != 2 || ids[1].UserID != "1077" {
				t.Errorf("identities = %+v", ids)
			}
		})
	}
}

func TestLinkSemantics(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|p1", "auth0|p2", "google-oauth2|1077", "github|42", "auth0|s3")
	tok := s.IssueToken(0)

	// Steps run in order against one tenant.
	tests := []struct {
		name       string
		primary    string
		provider   string
		userID     string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"link", "auth0|p1", "google-oauth2", "1077", 201, "", ""},
		{"again into the same primary", "auth0|p1", "google-oauth2", "1077", 409, "identity_conflict", linker.MsgIdentityExists},
		{"already linked elsewhere", "auth0|p2", "google-oauth2", "1077", 400, "inexistent_identity", linker.MsgInexistentIdentity},
		{"primary's own identity", "auth0|p1", "auth0", "p1", 400, "invalid_body", linker.MsgSameIdentity},
		{"unknown secondary", "auth0|p1", "github", "999", 400, "inexistent_identity", linker.MsgInexistentIdentity},
		{"prefixed user_id", "auth0|p1", "github", "github|42", 400, "inexistent_identity", linker.MsgInexistentIdentity},
		{"wrong provider", "auth0|p1", "auth0", "42", 400, "inexistent_identity", linker.MsgInexistentIdentity},
		{"unknown primary", "auth0|nobody", "github", "42", 404, "inexistent_user", "User not found."},
		{"link s3 into p2", "auth0|p2", "auth0", "s3", 201, "", ""},
		{"primary linked away", "auth0|s3", "github", "42", 404, "inexistent_user", "User not found."},
		{"link github into p2", "auth0|p2", "github", "42", 201, "", ""},
		{"link p2 with its identities into p1", "auth0|p1", "auth0", "p2", 201, "", ""},
		{"moved identity again", "auth0|p1", "auth0", "s3", 409, "identity_conflict", linker.MsgIdentityExists},
	}
	for _, tt := range tests {
		a := link(t, s, tok, tt.primary, tt.provider, tt.userID)
		if a.status != tt.wantStatus {
			t.Fatalf("%s: status = %d (%s), want %d", tt.name, a.status, a.body, tt.wantStatus)
		}
		if tt.wantStatus != http.StatusCreated {
			if e := a.apiErr(t); e.ErrorCode != tt.wantCode || e.Message != tt.wantMsg {
				t.Errorf("%s: error = %s/%q, want %s/%q", tt.name, e.ErrorCode, e.Message, tt.wantCode, tt.wantMsg)
			}
		}
	}

	// The final state: p1 holds everything, the rest are gone.
	u, ok := s.User("auth0|p1")
	if !ok {
		t.Fatal("p1 is gone")
	}
	var got []string
	for _, id := range u.Identities {
		got = append(got, id.Provider+"|"+id.UserID)
	}
	want := "auth0|p1 google-oauth2|1077 auth0|p2 auth0|s3 github|42"
	if strings.Join(got, " ") != want {
		t.Errorf("p1 identities = %v, want %s", got, want)
	}
	if pd := u.Identities[1].ProfileData; pd["email"] != "1077@example.com" || pd["email_verified"] != true {
		t.Errorf("profileData of the linked identity = %v", pd)
	}
	for _, id := range []string{"google-oauth2|1077", "auth0|p2", "auth0|s3", "github|42"} {
		if p, ok := s.LinkedTo(id); !ok || p != "auth0|p1" {
			t.Errorf("LinkedTo(%s) = %q, %v; want auth0|p1", id, p, ok)
		}
		getUser(t, s, tok, id).want(t, http.StatusNotFound, "inexistent_user", "User not found.")
	}
	if p, ok := s.LinkedTo("auth0|p1"); ok {
		t.Errorf("LinkedTo(primary) = %q, want not linked", p)
	}
	st := s.Stats()
	if st.LinksApplied != 4 || st.Relinks != 2 || st.DoubleLinks != 1 || st.Posts != len(tests) ||
		st.PostsByPrimary["auth0|p1"] != 8 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLinkAnswerListsPrimaryFirst(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|64b0", "samlp|acme|bob@acme.com")
	ids := link(t, s, s.IssueToken(0), "auth0|64b0", "samlp", "acme|bob@acme.com").identities(t)
	want := []identity{
		{Connection: "Username-Password-Authentication", UserID: "64b0", Provider: "auth0"},
		{Connection: "acme", UserID: "acme|bob@acme.com", Provider: "samlp",
			ProfileData: map[string]any{"email": "bob@acme.com", "email_verified": true}},
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("identities = %+v\nwant %+v", ids, want)
	}
}

func TestLinkWith(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|p", "auth0|s", "auth0|t")
	tok := s.IssueToken(0)
	post := func(jwt string) answer {
		return call(t, s, http.MethodPost, linkPath("auth0|p"), tok, ctJSON, `{"link_with":"`+jwt+`"}`)
	}

	post("eyJunknown").want(t, http.StatusBadRequest, "invalid_token", "Invalid token (link_with).")
	post(s.LinkWithToken("auth0|never")).want(t, http.StatusBadRequest, "inexistent_identity", linker.MsgInexistentIdentity)
	post(s.LinkWithToken("auth0|p")).want(t, http.StatusBadRequest, "invalid_body", linker.MsgSameIdentity)
	jwt := s.LinkWithToken("auth0|s")
	if ids := post(jwt).identities(t); len(ids) != 2 || ids[1].UserID != "s" {
		t.Errorf("identities = %+v", ids)
	}
	post(jwt).want(t, http.StatusConflict, "identity_conflict", linker.MsgIdentityExists)
	if p, _ := s.LinkedTo("auth0|s"); p != "auth0|p" {
		t.Errorf("LinkedTo = %q", p)
	}
	if _, linked := s.LinkedTo("auth0|t"); linked {
		t.Error("auth0|t linked")
	}
}

// Ids holding characters that are special in a URL path reach the server
// intact when escaped with url.PathEscape.
func TestLinkPathEscapedIDs(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	tok := s.IssueToken(0)
	ids := []string{
		"auth0|a/b",
		"auth0|a/../b",
		"auth0|50%off",
		"auth0|%2F",
		"auth0|what?x=1&y",
		"auth0|#fragment",
		"auth0|with space",
		"auth0|plus+sign",
		"samlp|acme|bob@acme.com",
		"oidc|conn|google-oauth2|123",
		"auth0|ünïcödé",
	}
	for i, id := range ids {
		t.Run(id, func(t *testing.T) {
			sec := fmt.Sprintf("auth0|sec%d", i)
			s.Seed(id, sec)
			link(t, s, tok, id, "auth0", strings.TrimPrefix(sec, "auth0|")).identities(t)
			if p, ok := s.LinkedTo(sec); !ok || p != id {
				t.Errorf("LinkedTo(%s) = %q, want %q", sec, p, id)
			}
			a := getUser(t, s, tok, id)
			if a.status != http.StatusOK || !strings.Contains(string(a.body), `"identities"`) {
				t.Fatalf("GET = %d %s", a.status, a.body)
			}
			// The id as a secondary, named in the body.
			prim := fmt.Sprintf("auth0|prim%d", i)
			s.Seed(prim)
			provider, rest, _ := linker.ParseUserID(id)
			link(t, s, tok, prim, provider, rest).identities(t)
			if p, _ := s.LinkedTo(id); p != prim {
				t.Errorf("LinkedTo(%s) = %q, want %s", id, p, prim)
			}
		})
	}

	s.Seed("auth0|x/y", "auth0|z")
	for _, path := range []string{
		"/api/v2/users/auth0|x/y/identities",             // unescaped '/' adds a segment
		"/api/v2/users/auth0%7Cx%2Fy/identities/extra",   // extra segment
		"/api/v2/users/auth0%7Cx%2Fy/identities/",        // trailing slash
		"/api/v2/users//identities",                      // empty id
		"/api/v2/users/auth0%7Cx%252Fy/identities",       // "%2F" literally, unknown user
		"/api/v2/users/auth0%7Cx%2Fy%2Fidentities/extra", // one id, wrong tail
	} {
		a := call(t, s, http.MethodPost, path, tok, ctJSON, `{"provider":"auth0","user_id":"z"}`)
		if a.status != http.StatusNotFound {
			t.Errorf("POST %s = %d, want 404", path, a.status)
		}
	}
	if _, linked := s.LinkedTo("auth0|z"); linked {
		t.Error("a malformed path linked")
	}
}

// Concurrent clients racing to link the same secondaries into different
// primaries: each secondary is linked exactly once.
func TestLinkConcurrent(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	tok := s.IssueToken(0)
	const primaries, secondaries = 5, 40
	for i := range secondaries {
		s.Seed(fmt.Sprintf("google-oauth2|%d", i))
	}
	var wg sync.WaitGroup
	created := make([]int, primaries)
	for p := range primaries {
		s.Seed(fmt.Sprintf("auth0|p%d", p))
		wg.Go(func() {
			for i := range secondaries {
				a, err := send(t.Context(), s, http.MethodPost, linkPath(fmt.Sprintf("auth0|p%d", p)), tok, ctJSON,
					fmt.Sprintf(`{"provider":"google-oauth2","user_id":%d}`, i))
				if err != nil {
					t.Error(err)
					return
				}
				switch a.status {
				case http.StatusCreated:
					created[p]++
				case http.StatusBadRequest:
				default:
					t.Errorf("status %d: %s", a.status, a.body)
				}
			}
		})
	}
	wg.Wait()
	total, identities := 0, 0
	for p := range primaries {
		total += created[p]
		u, _ := s.User(fmt.Sprintf("auth0|p%d", p))
		identities += len(u.Identities)
	}
	st := s.Stats()
	if total != secondaries || identities != primaries+secondaries || st.LinksApplied != secondaries ||
		st.DoubleLinks != (primaries-1)*secondaries {
		t.Errorf("created %d, identities %d, stats %+v", total, identities, st)
	}
}
