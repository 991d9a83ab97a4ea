package linkertest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// token is an access token the server accepts.
type token struct {
	expires time.Time // zero: never
	scopes  map[string]bool
}

// defaultScopes are the scopes of tokens from /oauth/token, and of
// [Server.IssueToken] when given none.
var defaultScopes = []string{"read:users", "update:users"}

// fakeJWT returns a random string shaped like a JWT. It is opaque: the
// server only looks it up.
func fakeJWT() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	enc := base64.RawURLEncoding
	return "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + enc.EncodeToString(b[:16]) + "." + enc.EncodeToString(b[16:])
}

// IssueToken returns a new bearer token for /api/v2 with the given scopes
// (read:users and update:users when none are given). It expires ttl after
// now on the server's clock, exactly; ttl <= 0 makes a token that never
// expires.
func (s *Server) IssueToken(ttl time.Duration, scopes ...string) string {
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	t := token{scopes: make(map[string]bool, len(scopes))}
	for _, sc := range scopes {
		t.scopes[sc] = true
	}
	if ttl > 0 {
		t.expires = s.now().Add(ttl)
	}
	v := fakeJWT()
	s.mu.Lock()
	s.tokens[v] = t
	s.mu.Unlock()
	return v
}

// RevokeToken makes tok invalid: requests bearing it get 401 "Invalid
// token.". Unknown tokens are ignored.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	delete(s.tokens, tok)
	s.mu.Unlock()
}

// LinkWithToken returns a JWT-shaped string that, sent as link_with, names
// the account secondaryFullID. The account need not exist (linking then
// fails as for provider and user_id). The token does not expire.
func (s *Server) LinkWithToken(secondaryFullID string) string {
	v := fakeJWT()
	s.mu.Lock()
	s.linkWith[v] = secondaryFullID
	s.mu.Unlock()
	return v
}

func (s *Server) linkWithTarget(jwt string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.linkWith[jwt]
	return id, ok
}

// Scope requirements of the two endpoints, and the 403 messages.
var (
	linkScopes = []string{"update:users", "update:current_user_identities"}
	readScopes = []string{"read:users", "read:user_idp_tokens", "read:current_user"}
)

const (
	msgLinkScope = "Insufficient scope; expected: update:users, update:current_user_identities."
	msgReadScope = "Insufficient scope; expected any of: read:users, read:user_idp_tokens, read:current_user."
	msgExpired   = "Expired token received for JSON Web Token validation"
	msgBadToken  = "Invalid token."
	msgBadHeader = "Bad HTTP authentication header format"
)

// jwtShaped reports whether tok has the shape of a JWT: three non-empty
// base64url segments separated by dots. Auth0 answers a bearer token of
// another shape with 400 "Bad HTTP authentication header format" (code
// "Bearer") before it looks the token up.
func jwtShaped(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=") != "" {
			return false
		}
	}
	return true
}

// authorize checks the bearer token of r for any of scopes. It returns the
// error to answer, or a zero status when r may proceed.
func (s *Server) authorize(r *http.Request, scopes []string, scopeMsg string) (status int, code, msg string) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return http.StatusUnauthorized, "invalid_token", msgBadToken
	}
	if !jwtShaped(tok) {
		return http.StatusBadRequest, "Bearer", msgBadHeader
	}
	s.mu.Lock()
	t, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok {
		return http.StatusUnauthorized, "invalid_token", msgBadToken
	}
	if !t.expires.IsZero() && !s.now().Before(t.expires) {
		return http.StatusUnauthorized, "invalid_token", msgExpired
	}
	for _, sc := range scopes {
		if t.scopes[sc] {
			return 0, "", ""
		}
	}
	return http.StatusForbidden, "insufficient_scope", scopeMsg
}

// oauthError is the error body of /oauth/token.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// serveToken answers POST /oauth/token, client credentials grant only.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.writeError(w, http.StatusNotFound, "not_found", "Not Found")
		return
	}
	params, ok := readTokenParams(w, r)
	if !ok {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Invalid request body.")
		return
	}
	grant := params["grant_type"]
	switch {
	case grant == "":
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
		return
	case grant != "client_credentials":
		s.writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	}
	if s.clientID == "" || !equal(params["client_id"], s.clientID) || !equal(params["client_secret"], s.secret) {
		s.writeOAuthError(w, http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	if aud := params["audience"]; aud != s.audience {
		s.writeOAuthError(w, http.StatusForbidden, "access_denied", "Service not enabled within domain: "+aud)
		return
	}
	tok := s.IssueToken(s.tokenTTL, defaultScopes...)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	s.writeJSON(w, http.StatusOK, struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}{tok, "Bearer", ceilSeconds(s.tokenTTL), strings.Join(defaultScopes, " ")})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// readTokenParams reads a form or JSON token request into string
// parameters; ok is false for an unreadable body or unsupported type.
func readTokenParams(w http.ResponseWriter, r *http.Request) (params map[string]string, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	params = map[string]string{}
	switch mt {
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false
		}
		for k, v := range q {
			params[k] = v[0]
		}
	case "application/json":
		var raw map[string]any
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, false
		}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				params[k] = v
			case float64:
				params[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case bool:
				params[k] = strconv.FormatBool(v)
			}
		}
	default:
		return nil, false
	}
	return params, true
}

func (s *Server) writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	s.writeJSON(w, status, oauthError{code, desc})
}
