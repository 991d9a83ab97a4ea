package linkertest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func grantForm(id, secret, audience string) string {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id},
		"client_secret": {secret}, "audience": {audience}}.Encode()
}

func TestClientCredentialsGrant(t *testing.T) {
	s := newServer(t, linkertest.Config{ClientID: "cid", ClientSecret: "csecret"})
	s.Seed("auth0|u")
	aud := s.URL + "/api/v2/"
	jsonBody := func(m map[string]string) string { b, _ := json.Marshal(m); return string(b) }

	tests := []struct {
		name       string
		ctype      string
		give       string
		wantStatus int
		wantError  string
		wantDesc   string
	}{
		{"form", ctForm, grantForm("cid", "csecret", aud), 200, "", ""},
		{"JSON", ctJSON, jsonBody(map[string]string{"grant_type": "client_credentials", "client_id": "cid",
			"client_secret": "csecret", "audience": aud}), 200, "", ""},
		{"wrong secret", ctForm, grantForm("cid", "nope", aud), 401, "access_denied", "Unauthorized"},
		{"wrong client", ctForm, grantForm("other", "csecret", aud), 401, "access_denied", "Unauthorized"},
		{"wrong audience", ctForm, grantForm("cid", "csecret", "https://elsewhere/api/v2/"), 403, "access_denied",
			"Service not enabled within domain: https://elsewhere/api/v2/"},
		{"audience without slash", ctForm, grantForm("cid", "csecret", s.URL+"/api/v2"), 403, "access_denied",
			"Service not enabled within domain: " + s.URL + "/api/v2"},
		{"no grant_type", ctForm, "client_id=cid&client_secret=csecret", 400, "invalid_request",
			"Missing required parameter: grant_type"},
		{"password grant", ctForm, "grant_type=password&client_id=cid&client_secret=csecret", 400,
			"unsupported_grant_type", "Unsupported grant type: password"},
		{"not a form", "text/plain", "grant_type=client_credentials", 400, "invalid_request", "Invalid request body."},
		{"bad JSON", ctJSON, "{", 400, "invalid_request", "Invalid request body."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, s, http.MethodPost, "/oauth/token", "", tt.ctype, tt.give)
			if a.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", a.status, a.body, tt.wantStatus)
			}
			if a.header.Get("X-Ratelimit-Limit") != "" {
				t.Error("/oauth/token answered with rate-limit headers")
			}
			if tt.wantStatus != http.StatusOK {
				var e oauthError
				if err := json.Unmarshal(a.body, &e); err != nil || e.Error != tt.wantError || e.Description != tt.wantDesc {
					t.Errorf("body = %s, want %s/%q", a.body, tt.wantError, tt.wantDesc)
				}
				return
			}
			var ta tokenAnswer
			if err := json.Unmarshal(a.body, &ta); err != nil {
				t.Fatal(err)
			}
			if ta.TokenType != "Bearer" || ta.ExpiresIn != 86400 || ta.Scope != "read:users update:users" ||
				ta.AccessToken == "" || a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("answer = %+v, Cache-Control %q", ta, a.header.Get("Cache-Control"))
			}
			if got := getUser(t, s, ta.AccessToken, "auth0|u").status; got != http.StatusOK {
				t.Errorf("GET with the issued token = %d", got)
			}
		})
	}
	if a := call(t, s, http.MethodGet, "/oauth/token", "", "", ""); a.status != http.StatusNotFound {
		t.Errorf("GET /oauth/token = %d, want 404", a.status)
	}
	if st := s.Stats(); st.TokenRequests != len(tests)+1 {
		t.Errorf("TokenRequests = %d, want %d", st.TokenRequests, len(tests)+1)
	}
}

func TestClientCredentialsWithoutClient(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	a := call(t, s, http.MethodPost, "/oauth/token", "", ctForm, grantForm("", "", s.URL+"/api/v2/"))
	if a.status != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", a.status)
	}
}

// A token from /oauth/token expires at exactly issue+TTL; expires_in rounds
// a sub-second TTL up.
func TestTokenExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := linkertest.NewServer(linkertest.Config{InMemory: true, ClientID: "c", ClientSecret: "s",
			TokenTTL: 1500 * time.Millisecond})
		defer s.Close()
		s.Seed("auth0|u")
		a := call(t, s, http.MethodPost, "/oauth/token", "", ctForm, grantForm("c", "s", s.URL+"/api/v2/"))
		var ta tokenAnswer
		if err := json.Unmarshal(a.body, &ta); err != nil || ta.ExpiresIn != 2 {
			t.Fatalf("token answer %s (%v), want expires_in 2", a.body, err)
		}
		forever := s.IssueToken(0)
		minute := s.IssueToken(time.Minute)

		time.Sleep(1500*time.Millisecond - time.Nanosecond)
		getUser(t, s, ta.AccessToken, "auth0|u").want(t, http.StatusOK, "", "")
		time.Sleep(time.Nanosecond)
		getUser(t, s, ta.AccessToken, "auth0|u").want(t, http.StatusUnauthorized, "invalid_token",
			"Expired token received for JSON Web Token validation")
		link(t, s, ta.AccessToken, "auth0|u", "auth0", "x").want(t, http.StatusUnauthorized, "invalid_token",
			"Expired token received for JSON Web Token validation")

		getUser(t, s, minute, "auth0|u").want(t, http.StatusOK, "", "")
		time.Sleep(time.Minute)
		getUser(t, s, minute, "auth0|u").want(t, http.StatusUnauthorized, "invalid_token", "Expired token")
		time.Sleep(1000 * time.Hour)
		getUser(t, s, forever, "auth0|u").want(t, http.StatusOK, "", "")
	})
}

func TestTokenSubSecondTTL(t *testing.T) {
	s := newServer(t, linkertest.Config{ClientID: "c", ClientSecret: "s", TokenTTL: time.Millisecond})
	a := call(t, s, http.MethodPost, "/oauth/token", "", ctForm, grantForm("c", "s", s.URL+"/api/v2/"))
	var ta tokenAnswer
	if err := json.Unmarshal(a.body, &ta); err != nil || ta.ExpiresIn != 1 {
		t.Errorf("token answer %s (%v), want expires_in 1", a.body, err)
	}
}

func TestAuthorization(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|u", "auth0|v")
	revoked := s.IssueToken(0)
	s.RevokeToken(revoked)
	const (
		badToken  = "Invalid token."
		linkScope = "Insufficient scope; expected: update:users, update:current_user_identities."
		readScope = "Insufficient scope; expected any of: read:users, read:user_idp_tokens, read:current_user."
	)

	tests := []struct {
		name       string
		header     string // Authorization
		get        bool   // GET the user instead of linking
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"no header", "", false, 401, "invalid_token", badToken},
		{"basic scheme", "Basic dXNlcjpwYXNz", false, 401, "invalid_token", badToken},
		{"empty bearer", "Bearer ", true, 401, "invalid_token", badToken},
		{"unknown token", "Bearer eyJunknown.eyJx.sig", true, 401, "invalid_token", badToken},
		{"not a JWT", "Bearer eyJunknown", true, 400, "Bearer", "Bad HTTP authentication header format"},
		{"not a JWT, link", "Bearer a.b.c.d", false, 400, "Bearer", "Bad HTTP authentication header format"},
		{"revoked token", "Bearer " + revoked, false, 401, "invalid_token", badToken},
		{"read scope links", "Bearer " + s.IssueToken(0, "read:users"), false, 403, "insufficient_scope", linkScope},
		{"update scope reads", "Bearer " + s.IssueToken(0, "update:users"), true, 403, "insufficient_scope", readScope},
		{"current user identities links", "Bearer " + s.IssueToken(0, "update:current_user_identities"), false, 400,
			"inexistent_identity", "Linking to an inexistent identity is not allowed."},
		{"idp tokens scope reads", "Bearer " + s.IssueToken(0, "read:user_idp_tokens"), true, 200, "", ""},
		{"lower-case scheme", "bearer " + s.IssueToken(0), true, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, body := http.MethodPost, linkPath("auth0|u"), `{"provider":"auth0","user_id":"nobody"}`
			if tt.get {
				method, path, body = http.MethodGet, userPath("auth0|u"), ""
			}
			req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", ctJSON)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			a := readAnswer(t, resp)
			a.want(t, tt.wantStatus, tt.wantCode, tt.wantMsg)
			if a.header.Get("X-Ratelimit-Limit") == "" {
				t.Error("no rate-limit headers on the answer")
			}
		})
	}
}

func TestRevokeToken(t *testing.T) {
	s := newServer(t, linkertest.Config{})
	s.Seed("auth0|u")
	tok := s.IssueToken(0)
	getUser(t, s, tok, "auth0|u").want(t, http.StatusOK, "", "")
	s.RevokeToken(tok)
	getUser(t, s, tok, "auth0|u").want(t, http.StatusUnauthorized, "invalid_token", "Invalid token.")
	s.RevokeToken("never issued")
}
