package linker_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// fakeTenant starts a fake tenant with IdP tokens in its answers, and a
// client holding a token with the given scopes (the default ones when
// none).
func fakeTenant(t *testing.T, scopes ...string) (*linkertest.Server, *linker.Client, string) {
	t.Helper()
	s := linkertest.NewServer(linkertest.Config{IdPTokens: true})
	t.Cleanup(s.Close)
	tok := s.IssueToken(0, scopes...)
	base, err := linker.ParseDomain(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := linker.NewClient(base, linker.StaticToken(tok), linker.WithHTTPClient(s.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return s, c, tok
}

func withMetadata(id string) linkertest.User {
	return linkertest.User{
		UserID: id, Email: "ann@example.com", EmailVerified: true,
		UserMetadata: map[string]any{"theme": "dark", "address": map[string]any{"home": "1 Main St", "work": "2 Mill Rd"}},
		AppMetadata:  map[string]any{"plan": "full"},
	}
}

func TestPatchUser(t *testing.T) {
	s, c, _ := fakeTenant(t)
	s.AddUser(withMetadata("auth0|ann"))
	p, resp, err := c.PatchUser(t.Context(), "auth0|ann", linker.UserPatch{
		UserMetadata: map[string]any{"address": map[string]any{"home": "3 New St"}, "theme": nil, "lang": "fr"},
		AppMetadata:  map[string]any{"tier": json.Number("12345678901234567890")},
	})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PatchUser = %v, %+v", err, resp)
	}
	wantUser := map[string]any{"address": map[string]any{"home": "3 New St"}, "lang": "fr"}
	wantApp := map[string]any{"plan": "full", "tier": json.Number("12345678901234567890")}
	if p.UserID != "auth0|ann" || !reflect.DeepEqual(p.UserMetadata, wantUser) {
		t.Errorf("answer = %+v, want user_metadata %v", p, wantUser)
	}
	got, _, err := c.GetProfile(t.Context(), "auth0|ann")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.UserMetadata, wantUser) || !reflect.DeepEqual(got.AppMetadata, wantApp) {
		t.Errorf("GetProfile metadata = %v / %v, want %v / %v", got.UserMetadata, got.AppMetadata, wantUser, wantApp)
	}
	if u, _ := s.User("auth0|ann"); u.UserMetadata["lang"] != "fr" {
		t.Errorf("tenant state = %v", u.UserMetadata)
	}
}

func TestPatchUserRefusesBeforeSending(t *testing.T) {
	s, c, _ := fakeTenant(t)
	s.AddUser(withMetadata("auth0|ann"))
	for name, patch := range map[string]linker.UserPatch{
		"nothing":             {},
		"empty user_metadata": {UserMetadata: map[string]any{}},
		"empty app_metadata":  {UserMetadata: map[string]any{"a": 1}, AppMetadata: map[string]any{}},
		"unencodable":         {UserMetadata: map[string]any{"f": func() {}}},
	} {
		_, resp, err := c.PatchUser(t.Context(), "auth0|ann", patch)
		if !errors.Is(err, linker.ErrInvalidRequest) || resp != nil {
			t.Errorf("%s: err = %v, resp %v; want ErrInvalidRequest and nothing sent", name, err, resp)
		}
	}
	if _, _, err := c.PatchUser(t.Context(), "..", linker.UserPatch{UserMetadata: map[string]any{"a": 1}}); !errors.Is(err, linker.ErrInvalidRequest) {
		t.Errorf("dot-segment id: err = %v", err)
	}
	if n := s.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached the tenant, want none", n)
	}
	if u, _ := s.User("auth0|ann"); !reflect.DeepEqual(u.UserMetadata, withMetadata("").UserMetadata) {
		t.Errorf("metadata changed: %v", u.UserMetadata)
	}
}

func TestUnlink(t *testing.T) {
	s, c, _ := fakeTenant(t)
	s.AddUser(withMetadata("auth0|ann"))
	s.AddUser(withMetadata("samlp|acme|ann@acme.com"))
	if _, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: "auth0|ann", Provider: "samlp", UserID: "acme|ann@acme.com"}); err != nil {
		t.Fatal(err)
	}
	ids, resp, err := c.Unlink(t.Context(), "auth0|ann", "samlp", "acme|ann@acme.com")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Unlink = %v, %+v", err, resp)
	}
	if len(ids) != 1 || ids[0].Provider != "auth0" || ids[0].UserID != "ann" {
		t.Errorf("identities left = %+v, want the primary's own", ids)
	}
	back, _, err := c.GetProfile(t.Context(), "samlp|acme|ann@acme.com")
	if err != nil {
		t.Fatalf("the unlinked account is not a user again: %v", err)
	}
	if back.UserMetadata != nil || back.AppMetadata != nil || back.Email != "ann@example.com" {
		t.Errorf("recreated user = %+v, want no metadata and its email", back)
	}

	// Typed errors.
	_, _, err = c.Unlink(t.Context(), "auth0|ann", "samlp", "acme|ann@acme.com")
	if !linker.IsNotFound(err) || !strings.HasPrefix(err.Error(), "unlink samlp|acme|ann@acme.com from auth0|ann: ") {
		t.Errorf("second unlink: %v, want a 404 *APIError", err)
	}
	_, _, err = c.Unlink(t.Context(), "auth0|ann", "auth0", "ann")
	var ae *linker.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Message != "Main identity cannot be removed." {
		t.Errorf("unlink main identity: %v", err)
	}
	if _, _, err = c.Unlink(t.Context(), "auth0|nobody", "github", "1"); !linker.IsNotFound(err) {
		t.Errorf("unknown primary: %v", err)
	}
	before := s.Stats().Requests
	for _, bad := range [][3]string{{"auth0|ann", "nope", "1"}, {"auth0|ann", "github", ""}, {"", "github", "1"}, {"auth0|ann", "github", ".."}} {
		if _, resp, err := c.Unlink(t.Context(), bad[0], bad[1], bad[2]); !errors.Is(err, linker.ErrInvalidRequest) || resp != nil {
			t.Errorf("Unlink%q = %v, want ErrInvalidRequest", bad, err)
		}
	}
	if s.Stats().Requests != before {
		t.Error("an invalid unlink was sent")
	}
}

func TestUsersErrorsHideToken(t *testing.T) {
	s, c, tok := fakeTenant(t, "read:users")
	s.AddUser(withMetadata("auth0|ann"))
	s.Seed("github|7")
	_, _, perr := c.PatchUser(t.Context(), "auth0|ann", linker.UserPatch{UserMetadata: map[string]any{"a": 1}})
	_, _, uerr := c.Unlink(t.Context(), "auth0|ann", "github", "7")
	for _, err := range []error{perr, uerr} {
		if !linker.IsForbidden(err) {
			t.Errorf("err = %v, want 403", err)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("error holds the token: %v", err)
		}
	}
	// IdP tokens in answers are not kept.
	p, _, err := c.GetProfile(t.Context(), "auth0|ann")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(p); strings.Contains(string(b), "idp-secret-") {
		t.Errorf("profile keeps IdP tokens: %s", b)
	}
}
