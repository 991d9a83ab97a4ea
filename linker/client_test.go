package linker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

const (
	testToken = "eyJhbGciOiJSUzI1NiJ9.dGVzdC1hY2Nlc3MtdG9rZW4.c2lnbmF0dXJlLW9uZQ"
	testJWT   = "eyJhbGciOiJSUzI1NiJ9.c2Vjb25kYXJ5LWFjY291bnQ.c2lnbmF0dXJlLXR3bw"
	primary   = "auth0|63d17c6a9d503d76c056c177"
)

// newServer starts an httptest server that is closed when the test ends.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newClient returns a Client for srv that authenticates with ts.
func newClient(t *testing.T, srv *httptest.Server, ts linker.TokenSource, opts ...linker.Option) *linker.Client {
	t.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := linker.NewClient(base, ts, append([]linker.Option{linker.WithHTTPClient(srv.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

const linkedBody = `[{"connection":"Username-Password-Authentication","user_id":"63d17c6a9d503d76c056c177","provider":"auth0","isSocial":false},` +
	`{"connection":"google-oauth2","user_id":"1234567890","provider":"google-oauth2","isSocial":true}]`

func TestLinkSendsRequest(t *testing.T) {
	tests := []struct {
		name     string
		req      linker.LinkRequest
		wantBody map[string]any
	}{
		{
			name:     "provider and user_id",
			req:      linker.LinkRequest{PrimaryID: primary, Provider: "google-oauth2", UserID: "1234567890"},
			wantBody: map[string]any{"provider": "google-oauth2", "user_id": "1234567890"},
		},
		{
			name:     "with connection_id",
			req:      linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "63d17c6b77d74b740960460a", ConnectionID: "con_ftSSLHb0O7rcUGmF"},
			wantBody: map[string]any{"provider": "auth0", "user_id": "63d17c6b77d74b740960460a", "connection_id": "con_ftSSLHb0O7rcUGmF"},
		},
		{
			name:     "enterprise user_id keeps its bars",
			req:      linker.LinkRequest{PrimaryID: primary, Provider: "samlp", UserID: "acme|bob@acme.com"},
			wantBody: map[string]any{"provider": "samlp", "user_id": "acme|bob@acme.com"},
		},
		{
			name:     "link_with alone",
			req:      linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT},
			wantBody: map[string]any{"link_with": testJWT},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.Method != http.MethodPost {
					t.Errorf("method = %s, want POST", r.Method)
				}
				if got, want := r.RequestURI, "/api/v2/users/auth0%7C63d17c6a9d503d76c056c177/identities"; got != want {
					t.Errorf("request URI = %q, want %q", got, want)
				}
				wantHeaders := map[string]string{
					"Authorization": "Bearer " + testToken,
					"Content-Type":  "application/json",
					"Accept":        "application/json",
					"User-Agent":    "linkbatch",
				}
				for k, v := range wantHeaders {
					if got := r.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				var got map[string]any
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Errorf("decode body: %v", err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.wantBody) {
					t.Errorf("body = %v, want exactly %v", got, tt.wantBody)
				}
				w.Header().Set("X-Ratelimit-Limit", "50")
				w.Header().Set("X-Ratelimit-Remaining", "49")
				w.Header().Set("X-Ratelimit-Reset", "1675452600")
				w.Header().Set("Date", "Fri, 03 Feb 2023 19:29:59 GMT")
				writeJSON(w, http.StatusCreated, linkedBody)
			})
			c := newClient(t, newServer(t, mux), linker.StaticToken(testToken))

			ids, resp, err := c.Link(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
			if calls.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", calls.Load())
			}
			want := []linker.Identity{
				{Connection: "Username-Password-Authentication", Provider: "auth0", UserID: "63d17c6a9d503d76c056c177"},
				{Connection: "google-oauth2", Provider: "google-oauth2", UserID: "1234567890", IsSocial: true},
			}
			if !slices.Equal(ids, want) {
				t.Errorf("identities = %+v, want %+v", ids, want)
			}
			wantResp := linker.Response{
				StatusCode: http.StatusCreated,
				RateLimit:  linker.RateLimit{Known: true, Limit: 50, Remaining: 49, Reset: time.Unix(1675452600, 0)},
				Date:       time.Date(2023, 2, 3, 19, 29, 59, 0, time.UTC),
			}
			if resp == nil || resp.StatusCode != wantResp.StatusCode || resp.RateLimit != wantResp.RateLimit ||
				!resp.Date.Equal(wantResp.Date) {
				t.Errorf("response = %+v, want %+v", resp, wantResp)
			}
		})
	}
}

func TestLinkRejectsInvalidRequests(t *testing.T) {
	tests := []struct {
		name string
		req  linker.LinkRequest
	}{
		{"link_with and provider", linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT, Provider: "auth0"}},
		{"link_with and user_id", linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT, UserID: "x"}},
		{"link_with and connection_id", linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT, ConnectionID: "con_ftSSLHb0O7rcUGmF"}},
		{"nothing", linker.LinkRequest{PrimaryID: primary}},
		{"no user_id", linker.LinkRequest{PrimaryID: primary, Provider: "auth0"}},
		{"no provider", linker.LinkRequest{PrimaryID: primary, UserID: "abc"}},
		{"blank user_id", linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "  "}},
		{"control char in user_id", linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "a\nb"}},
		{"invalid UTF-8 user_id", linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "a\xffb"}},
		{"bad connection_id", linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "abc", ConnectionID: "Username-Password-Authentication"}},
		{"empty primary", linker.LinkRequest{Provider: "auth0", UserID: "abc"}},
		{"dot-dot primary", linker.LinkRequest{PrimaryID: "..", Provider: "auth0", UserID: "abc"}},
		{"primary with NUL", linker.LinkRequest{PrimaryID: "auth0|a\x00", Provider: "auth0", UserID: "abc"}},
	}
	var calls atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, http.StatusCreated, "[]")
	}))
	c := newClient(t, srv, linker.StaticToken(testToken))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, resp, err := c.Link(t.Context(), tt.req)
			if !errors.Is(err, linker.ErrInvalidRequest) {
				t.Fatalf("Link error = %v, want ErrInvalidRequest", err)
			}
			if ids != nil || resp != nil {
				t.Errorf("Link = %v, %v; want nil values", ids, resp)
			}
			if !strings.HasPrefix(err.Error(), "link "+tt.req.PrimaryID+": ") {
				t.Errorf("error %q lacks the link prefix", err)
			}
			if strings.Contains(fmt.Sprintf("%+v", err), testJWT) {
				t.Errorf("error %q contains the link_with JWT", err)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("server saw %d requests for invalid input, want 0", n)
	}
}

func TestLinkEscapesPrimaryID(t *testing.T) {
	tests := []struct {
		id      string
		wantURI string
	}{
		{"auth0|abc", "/api/v2/users/auth0%7Cabc/identities"},
		{"auth0|a/b", "/api/v2/users/auth0%7Ca%2Fb/identities"},
		{"samlp|acme|bob@acme.com", "/api/v2/users/samlp%7Cacme%7Cbob@acme.com/identities"},
		{"oauth2|x|a?b=c", "/api/v2/users/oauth2%7Cx%7Ca%3Fb=c/identities"},
		{"oauth2|x#frag", "/api/v2/users/oauth2%7Cx%23frag/identities"},
		{"custom|100% sure", "/api/v2/users/custom%7C100%25%20sure/identities"},
		{"custom|%2F", "/api/v2/users/custom%7C%252F/identities"},
		{"custom|../..", "/api/v2/users/custom%7C..%2F../identities"},
		{"email|ünï+cødé", "/api/v2/users/email%7C%C3%BCn%C3%AF+c%C3%B8d%C3%A9/identities"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			mux := http.NewServeMux()
			var gotID, gotURI, gotQuery, gotPath string
			mux.HandleFunc("POST /api/v2/users/{id}/identities", func(w http.ResponseWriter, r *http.Request) {
				gotID, gotURI, gotQuery, gotPath = r.PathValue("id"), r.RequestURI, r.URL.RawQuery, r.URL.Path
				writeJSON(w, http.StatusCreated, "[]")
			})
			c := newClient(t, newServer(t, mux), linker.StaticToken(testToken))
			if _, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: tt.id, Provider: "auth0", UserID: "x"}); err != nil {
				t.Fatalf("Link: %v", err)
			}
			if gotURI != tt.wantURI {
				t.Errorf("request URI = %q, want %q", gotURI, tt.wantURI)
			}
			if gotID != tt.id {
				t.Errorf("server's {id} segment = %q, want %q", gotID, tt.id)
			}
			if gotQuery != "" {
				t.Errorf("query = %q, want none", gotQuery)
			}
			if want := "/api/v2/users/" + tt.id + "/identities"; gotPath != want {
				t.Errorf("decoded path = %q, want %q", gotPath, want)
			}
		})
	}
}

func TestLinkDropsIdPTokens(t *testing.T) {
	secrets := []string{"ya29.idp-access-token-value", "1//idp-refresh-token-value", "idp-token-secret-value"}
	body := fmt.Sprintf(`[{"connection":"google-oauth2","user_id":1234567890123,"provider":"google-oauth2","isSocial":true,`+
		`"access_token":%q,"refresh_token":%q,"access_token_secret":%q,"expires_in":3599,`+
		`"profileData":{"email":"bob@example.com","access_token":%q}}]`, secrets[0], secrets[1], secrets[2], secrets[0])
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, body)
	}))
	c := newClient(t, srv, linker.StaticToken(testToken))
	ids, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "google-oauth2", UserID: "1234567890123"})
	if err != nil {
		t.Fatal(err)
	}
	want := []linker.Identity{{Connection: "google-oauth2", Provider: "google-oauth2", UserID: "1234567890123", IsSocial: true}}
	if !slices.Equal(ids, want) {
		t.Errorf("identities = %+v, want %+v", ids, want)
	}
	dump := fmt.Sprintf("%+v %#v %+v %#v", ids, ids, resp, resp)
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Errorf("returned values contain the IdP token %q: %s", s, dump)
		}
	}
}

func TestLinkClassifiesStatuses(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		contentType   string
		body          string
		wantCode      string
		wantMessage   string
		wantRateLimit bool
		wantAuth      bool
		wantExpired   bool
		wantMaybe     bool
	}{
		{name: "400 invalid body", status: 400,
			body:     `{"statusCode":400,"error":"Bad Request","message":"Payload validation error: 'Additional properties not allowed: foo'.","errorCode":"invalid_body"}`,
			wantCode: "invalid_body", wantMessage: "Payload validation error: 'Additional properties not allowed: foo'."},
		{name: "400 invalid uri", status: 400,
			body:     `{"statusCode":400,"error":"Bad Request","message":"Invalid request URI.","errorCode":"invalid_uri"}`,
			wantCode: "invalid_uri", wantMessage: "Invalid request URI."},
		{name: "400 provider not configured", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"The provider/connection is not configured."}`,
			wantMessage: "The provider/connection is not configured."},
		{name: "400 same identity", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Main identity and the new one are the same."}`,
			wantMessage: linker.MsgSameIdentity},
		{name: "400 link_with token", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Invalid token (link_with)."}`,
			wantMessage: "Invalid token (link_with)."},
		{name: "400 inexistent identity requires connection", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Linking to an inexistent identity requires a connection."}`,
			wantMessage: "Linking to an inexistent identity requires a connection."},
		{name: "400 inexistent identity", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Linking to an inexistent identity is not allowed."}`,
			wantMessage: linker.MsgInexistentIdentity, wantMaybe: true},
		{name: "400 unable to link", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Unable to link with the secondary account."}`,
			wantMessage: "Unable to link with the secondary account."},
		{name: "400 secondary not found", status: 400,
			body:        `{"statusCode":400,"error":"Bad Request","message":"Provided secondary account not found."}`,
			wantMessage: "Provided secondary account not found."},
		{name: "401 invalid token", status: 401,
			body:     `{"statusCode":401,"error":"Unauthorized","message":"Invalid token.","errorCode":"invalid_token"}`,
			wantCode: "invalid_token", wantMessage: "Invalid token.", wantAuth: true},
		{name: "401 bad signature", status: 401,
			body:        `{"statusCode":401,"error":"Unauthorized","message":"Invalid signature received for JSON Web Token validation"}`,
			wantMessage: "Invalid signature received for JSON Web Token validation", wantAuth: true},
		{name: "401 expired with a token that cannot renew", status: 401,
			body:     `{"statusCode":401,"error":"Unauthorized","message":"Expired token received for JSON Web Token validation","errorCode":"invalid_token"}`,
			wantCode: "invalid_token", wantMessage: "Expired token received for JSON Web Token validation", wantAuth: true, wantExpired: true},
		{name: "403 scope", status: 403,
			body:     `{"statusCode":403,"error":"Forbidden","message":"Insufficient scope; expected: update:users, update:current_user_identities.","errorCode":"insufficient_scope"}`,
			wantCode: "insufficient_scope", wantMessage: "Insufficient scope; expected: update:users, update:current_user_identities.", wantAuth: true},
		{name: "403 subject", status: 403,
			body:        `{"statusCode":403,"error":"Forbidden","message":"User to be acted on does not match subject in bearer token."}`,
			wantMessage: "User to be acted on does not match subject in bearer token.", wantAuth: true},
		{name: "404 primary", status: 404,
			body:     `{"statusCode":404,"error":"Not Found","message":"User not found.","errorCode":"inexistent_user"}`,
			wantCode: "inexistent_user", wantMessage: "User not found."},
		{name: "408", status: 408, contentType: "text/plain", body: "request timeout", wantMessage: "request timeout"},
		{name: "409 exists", status: 409,
			body:        `{"statusCode":409,"error":"Conflict","message":"Specified identity already exists."}`,
			wantMessage: linker.MsgIdentityExists, wantMaybe: true},
		{name: "429 full body", status: 429,
			body:     `{"statusCode":429,"error":"Too Many Requests","message":"Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.","errorCode":"too_many_requests"}`,
			wantCode: "too_many_requests", wantMessage: "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.",
			wantRateLimit: true},
		{name: "429 bare body", status: 429, body: `{"statusCode":429,"error":"Too Many Requests"}`, wantRateLimit: true},
		{name: "429 message only", status: 429, body: `{"message":"Too many requests."}`, wantMessage: "Too many requests.", wantRateLimit: true},
		{name: "500", status: 500,
			body:        `{"statusCode":500,"error":"Internal Server Error","message":"An internal server error occurred"}`,
			wantMessage: "An internal server error occurred"},
		{name: "501", status: 501, body: `{"statusCode":501,"error":"Not Implemented","message":"Not Implemented"}`, wantMessage: "Not Implemented"},
		{name: "502 html from a proxy", status: 502, contentType: "text/html",
			body:        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n",
			wantMessage: "<html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway</h1></center> </body> </html>"},
		{name: "503 empty body", status: 503, contentType: "text/plain"},
		{name: "504 long text", status: 504, contentType: "text/plain", body: strings.Repeat("gateway timeout ", 40),
			wantMessage: strings.TrimSpace(strings.Repeat("gateway timeout ", 40)[:200])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				ct := tt.contentType
				if ct == "" {
					ct = "application/json; charset=utf-8"
				}
				w.Header().Set("Content-Type", ct)
				w.Header().Set("X-Ratelimit-Limit", "10")
				w.Header().Set("X-Ratelimit-Remaining", "0")
				w.Header().Set("X-Ratelimit-Reset", "1675452600")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			c := newClient(t, srv, linker.StaticToken(testToken))

			ids, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
			if err == nil {
				t.Fatalf("Link = %v, nil; want an error", ids)
			}
			if calls.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", calls.Load())
			}
			if resp == nil || resp.StatusCode != tt.status || !resp.RateLimit.Known || resp.RateLimit.Limit != 10 {
				t.Errorf("response = %+v, want status %d with rate limits", resp, tt.status)
			}
			if !strings.HasPrefix(err.Error(), "link "+primary+": ") {
				t.Errorf("error %q lacks the link prefix", err)
			}
			var ae *linker.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Code != tt.wantCode || ae.Message != tt.wantMessage {
				t.Errorf("APIError = {Status:%d Code:%q Message:%q}, want {%d %q %q}", ae.Status, ae.Code, ae.Message, tt.status, tt.wantCode, tt.wantMessage)
			}
			var rle *linker.RateLimitError
			if got := errors.As(err, &rle); got != tt.wantRateLimit {
				t.Errorf("is *RateLimitError = %v, want %v", got, tt.wantRateLimit)
			}
			if linker.StatusOf(err) != tt.status {
				t.Errorf("StatusOf = %d, want %d", linker.StatusOf(err), tt.status)
			}
			if got := linker.IsAuth(err); got != tt.wantAuth {
				t.Errorf("IsAuth = %v, want %v", got, tt.wantAuth)
			}
			if got := linker.IsTokenExpired(err); got != tt.wantExpired {
				t.Errorf("IsTokenExpired = %v, want %v", got, tt.wantExpired)
			}
			if got := linker.IsMaybeAlreadyLinked(err); got != tt.wantMaybe {
				t.Errorf("IsMaybeAlreadyLinked = %v, want %v", got, tt.wantMaybe)
			}
		})
	}
}

func TestLinkRateLimitReset(t *testing.T) {
	reset := time.Now().Add(30 * time.Second).Truncate(time.Second)
	later := reset.Add(time.Minute)
	tests := []struct {
		name    string
		headers map[string]string
		// want returns the expected reset given the time span of the call.
		want func(before, after time.Time) (lo, hi time.Time)
	}{
		{"x-ratelimit-reset", map[string]string{"X-Ratelimit-Reset": fmt.Sprint(reset.Unix())},
			func(_, _ time.Time) (time.Time, time.Time) { return reset, reset }},
		{"retry-after seconds", map[string]string{"Retry-After": "7"},
			func(b, a time.Time) (time.Time, time.Time) { return b.Add(7 * time.Second), a.Add(7 * time.Second) }},
		{"retry-after date", map[string]string{"Retry-After": later.UTC().Format(http.TimeFormat)},
			func(_, _ time.Time) (time.Time, time.Time) { return later, later }},
		{"both, reset later", map[string]string{"X-Ratelimit-Reset": fmt.Sprint(later.Unix()), "Retry-After": "1"},
			func(_, _ time.Time) (time.Time, time.Time) { return later, later }},
		{"both, retry-after later", map[string]string{"X-Ratelimit-Reset": fmt.Sprint(reset.Unix()), "Retry-After": later.UTC().Format(http.TimeFormat)},
			func(_, _ time.Time) (time.Time, time.Time) { return later, later }},
		{"neither", map[string]string{},
			func(_, _ time.Time) (time.Time, time.Time) { return time.Time{}, time.Time{} }},
		{"garbage", map[string]string{"X-Ratelimit-Reset": "soon", "Retry-After": "later"},
			func(_, _ time.Time) (time.Time, time.Time) { return time.Time{}, time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.headers {
					w.Header().Set(k, v)
				}
				writeJSON(w, http.StatusTooManyRequests, `{"statusCode":429,"error":"Too Many Requests","errorCode":"too_many_requests"}`)
			}))
			c := newClient(t, srv, linker.StaticToken(testToken))
			before := time.Now()
			_, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
			after := time.Now()
			var rle *linker.RateLimitError
			if !errors.As(err, &rle) {
				t.Fatalf("error = %v, want *RateLimitError", err)
			}
			lo, hi := tt.want(before, after)
			if rle.Reset.Before(lo) || rle.Reset.After(hi) {
				t.Errorf("Reset = %v, want within [%v, %v]", rle.Reset, lo, hi)
			}
		})
	}
}

func TestLinkTransportErrors(t *testing.T) {
	req := linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"}
	t.Run("deadline", func(t *testing.T) {
		stop := make(chan struct{})
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
			select {
			case <-r.Context().Done():
			case <-stop:
			case <-time.After(10 * time.Second): // never hold srv.Close forever
			}
		}))
		t.Cleanup(func() { close(stop) }) // runs before srv.Close
		c := newClient(t, srv, linker.StaticToken(testToken))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, resp, err := c.Link(ctx, req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want context.DeadlineExceeded", err)
		}
		if resp != nil || linker.StatusOf(err) != 0 {
			t.Errorf("response = %+v, StatusOf = %d; want none", resp, linker.StatusOf(err))
		}
		if !strings.HasPrefix(err.Error(), "link "+primary+": ") {
			t.Errorf("error %q lacks the link prefix", err)
		}
	})
	t.Run("canceled before sending", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("request sent with a canceled context")
		}))
		c := newClient(t, srv, linker.StaticToken(testToken))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, _, err := c.Link(ctx, req); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		c := newClient(t, srv, linker.StaticToken(testToken))
		srv.Close()
		_, resp, err := c.Link(t.Context(), req)
		var opErr *net.OpError
		if !errors.As(err, &opErr) {
			t.Fatalf("error = %v, want a *net.OpError cause", err)
		}
		if resp != nil {
			t.Errorf("response = %+v, want nil", resp)
		}
	})
	t.Run("connection dropped", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		c := newClient(t, srv, linker.StaticToken(testToken))
		_, _, err := c.Link(t.Context(), req)
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error = %v, want an EOF cause", err)
		}
	})
	t.Run("undecodable 201", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusCreated, `{"not":"an array"}`)
		}))
		c := newClient(t, srv, linker.StaticToken(testToken))
		ids, resp, err := c.Link(t.Context(), req)
		if err != nil || resp == nil || resp.StatusCode != http.StatusCreated || resp.BodyErr == nil || ids != nil {
			t.Fatalf("Link = %v, %+v, %v; want the 201 response with a BodyErr and no error", ids, resp, err)
		}
	})
}

func TestLinkErrorsHideSecrets(t *testing.T) {
	// The server echoes everything it received into its error answers.
	echo := func(w http.ResponseWriter, r *http.Request, status int, asJSON bool) {
		b, _ := io.ReadAll(r.Body)
		text := "got " + r.Header.Get("Authorization") + " body " + string(b)
		if !asJSON {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, text[:min(len(text), 150)])
			return
		}
		m, _ := json.Marshal(map[string]any{"statusCode": status, "error": r.Header.Get("Authorization"), "message": text, "errorCode": string(b)})
		writeJSON(w, status, string(m))
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"json 400", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 400, true) }},
		{"text 400", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 400, false) }},
		{"json 429", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 429, true) }},
		{"text 500", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 500, false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, newServer(t, tt.handler), linker.StaticToken(testToken))
			_, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT})
			if err == nil || resp == nil {
				t.Fatalf("Link = %v, %v; want an error answer", resp, err)
			}
			var ae *linker.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			dump := fmt.Sprintf("%v %+v %#v", err, ae, ae)
			for _, s := range []string{testToken, testJWT} {
				if strings.Contains(dump, s) {
					t.Errorf("error reveals a secret: %s", dump)
				}
			}
			if !strings.Contains(err.Error(), "[REDACTED]") && !strings.Contains(err.Error(), "withheld") {
				t.Errorf("error %q: want the echoed secrets masked or the body withheld", err)
			}
		})
	}
}

func TestLinkReusesConnections(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"created", http.StatusCreated, linkedBody + strings.Repeat(" ", 10<<10)},
		{"conflict", http.StatusConflict, `{"statusCode":409,"error":"Conflict","message":"Specified identity already exists."}` + strings.Repeat(" ", 10<<10)},
		{"html error", http.StatusBadGateway, strings.Repeat("<p>bad gateway</p>", 2000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, tt.status, tt.body)
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			c := newClient(t, srv, linker.StaticToken(testToken))
			for range 5 {
				_, resp, _ := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
				if resp == nil || resp.StatusCode != tt.status {
					t.Fatalf("response = %+v, want status %d", resp, tt.status)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("5 sequential calls opened %d connections, want 1", n)
			}
		})
	}
}

func TestGetUser(t *testing.T) {
	tests := []struct {
		name      string
		id        string
		fields    []string
		wantURI   string
		status    int
		body      string
		want      *linker.User
		wantError int
	}{
		{
			name: "fields", id: "auth0|a/b", fields: []string{"user_id", "identities"},
			wantURI: "/api/v2/users/auth0%7Ca%2Fb?fields=user_id%2Cidentities&include_fields=true",
			status:  200,
			body: `{"user_id":"auth0|a/b","email":"bob@example.com","email_verified":true,"app_metadata":{"x":1},` +
				`"identities":[{"connection":"c","user_id":"a/b","provider":"auth0","access_token":"idp-secret-token"},` +
				`{"connection":"github","user_id":424242,"provider":"github","isSocial":true,"refresh_token":"idp-secret-token"}]}`,
			want: &linker.User{UserID: "auth0|a/b", Email: "bob@example.com", EmailVerified: true, Identities: []linker.Identity{
				{Connection: "c", Provider: "auth0", UserID: "a/b"},
				{Connection: "github", Provider: "github", UserID: "424242", IsSocial: true},
			}},
		},
		{
			name: "all fields", id: "google-oauth2|1", wantURI: "/api/v2/users/google-oauth2%7C1",
			status: 200, body: `{"user_id":"google-oauth2|1"}`,
			want: &linker.User{UserID: "google-oauth2|1"},
		},
		{
			name: "not found", id: "auth0|gone", wantURI: "/api/v2/users/auth0%7Cgone",
			status:    404,
			body:      `{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}`,
			wantError: 404,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.RequestURI != tt.wantURI {
					t.Errorf("request = %s %s, want GET %s", r.Method, r.RequestURI, tt.wantURI)
				}
				if r.Header.Get("Authorization") != "Bearer "+testToken || r.Header.Get("Content-Type") != "" {
					t.Errorf("headers = %v", r.Header)
				}
				writeJSON(w, tt.status, tt.body)
			}))
			c := newClient(t, srv, linker.StaticToken(testToken))
			u, resp, err := c.GetUser(t.Context(), tt.id, tt.fields...)
			if resp == nil || resp.StatusCode != tt.status {
				t.Errorf("response = %+v, want status %d", resp, tt.status)
			}
			if tt.wantError != 0 {
				if linker.StatusOf(err) != tt.wantError || !strings.HasPrefix(err.Error(), "get user "+tt.id+": ") {
					t.Errorf("error = %v, want a %d answer", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", u) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("user = %+v, want %+v", u, tt.want)
			}
			if strings.Contains(fmt.Sprintf("%+v %#v", u, u), "idp-secret-token") {
				t.Errorf("user holds an IdP token: %+v", u)
			}
		})
	}
}

func TestNewClient(t *testing.T) {
	base := &url.URL{Scheme: "https", Host: "acme.auth0.com"}
	tests := []struct {
		name   string
		base   *url.URL
		tokens linker.TokenSource
	}{
		{"nil base", nil, linker.StaticToken("t")},
		{"relative", &url.URL{Path: "acme.auth0.com"}, linker.StaticToken("t")},
		{"ftp", &url.URL{Scheme: "ftp", Host: "acme.auth0.com"}, linker.StaticToken("t")},
		{"user info", &url.URL{Scheme: "https", Host: "acme.auth0.com", User: url.User("bob")}, linker.StaticToken("t")},
		{"query", &url.URL{Scheme: "https", Host: "acme.auth0.com", RawQuery: "a=b"}, linker.StaticToken("t")},
		{"no tokens", base, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := linker.NewClient(tt.base, tt.tokens); err == nil {
				t.Errorf("NewClient = %v, want an error", c)
			}
		})
	}
}

// countingTransport is a real transport that counts the requests it sends.
type countingTransport struct {
	n atomic.Int32
	http.RoundTripper
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.n.Add(1)
	return ct.RoundTripper.RoundTrip(r)
}

func TestClientOptions(t *testing.T) {
	var redirected atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		writeJSON(w, http.StatusCreated, "[]")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if ua := r.Header.Get("User-Agent"); ua != "linkbatch/1.2.3" {
			t.Errorf("User-Agent = %q", ua)
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	srv := newServer(t, mux)
	ct := &countingTransport{RoundTripper: srv.Client().Transport}
	base, _ := linker.ParseDomain(srv.URL)
	c, err := linker.NewClient(base, linker.StaticToken(testToken),
		linker.WithHTTPClient(&http.Client{Transport: ct}), linker.WithUserAgent("linkbatch/1.2.3"), linker.WithUserAgent(""))
	if err != nil {
		t.Fatal(err)
	}
	_, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
	if linker.StatusOf(err) != http.StatusTemporaryRedirect || resp == nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("Link = %+v, %v; want the 307 as an error", resp, err)
	}
	if redirected.Load() != 0 {
		t.Error("the client followed a redirect")
	}
	if ct.n.Load() != 1 {
		t.Errorf("custom transport sent %d requests, want 1", ct.n.Load())
	}
}

// tenant is a test server with a token endpoint and a link endpoint. The
// link endpoint accepts the latest token issued unless expired says it has
// expired; other tokens get 401 "Expired token".
type tenant struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	issued   int
	current  string
	linkWait func(tok string)      // called before answering a link request
	expired  func(tok string) bool // nil: only older tokens are expired
}

func newTenant(t *testing.T) *tenant {
	tn := &tenant{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		tn.mu.Lock()
		tn.issued++
		tn.current = fmt.Sprintf("eyJ0eXAiOiJKV1QifQ.issued-%d.c2ln", tn.issued)
		tok := tn.current
		tn.mu.Unlock()
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":%q,"expires_in":86400,"token_type":"Bearer","scope":"update:users"}`, tok))
	})
	mux.HandleFunc("POST /api/v2/users/{id}/identities", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if tn.linkWait != nil {
			tn.linkWait(tok)
		}
		tn.mu.Lock()
		ok := tok == tn.current
		tn.mu.Unlock()
		if tn.expired != nil && tn.expired(tok) {
			ok = false
		}
		if !ok {
			writeJSON(w, http.StatusUnauthorized, `{"statusCode":401,"error":"Unauthorized","message":"Expired token received for JSON Web Token validation","errorCode":"invalid_token"}`)
			return
		}
		writeJSON(w, http.StatusCreated, linkedBody)
	})
	tn.srv = newServer(t, mux)
	return tn
}

func (tn *tenant) tokens() int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.issued
}

func TestLinkRenewsExpiredTokenOnce(t *testing.T) {
	const workers = 8
	tn := newTenant(t)
	// Hold the answers to the first token until every worker has sent it, so
	// that all of them see it expire together.
	var arrived atomic.Int32
	allIn := make(chan struct{})
	tn.expired = func(tok string) bool { return strings.Contains(tok, ".issued-1.") }
	tn.linkWait = func(tok string) {
		if !tn.expired(tok) {
			return
		}
		if arrived.Add(1) == workers {
			close(allIn)
		}
		select {
		case <-allIn:
		case <-t.Context().Done():
		}
	}
	base, _ := linker.ParseDomain(tn.srv.URL)
	cc := linker.NewClientCredentials(base, "client-id", "client-secret-value", "", tn.srv.Client())
	c := newClient(t, tn.srv, cc)

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Go(func() {
			_, _, errs[i] = c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: fmt.Sprint(i)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	if n := tn.tokens(); n != 2 {
		t.Errorf("token endpoint issued %d tokens, want 2 (first fetch and one renewal)", n)
	}
}

func TestLinkRenewsOnlyOnce(t *testing.T) {
	tn := newTenant(t)
	// Every token is reported as expired: one renewal, then the error.
	tn.expired = func(string) bool { return true }
	base, _ := linker.ParseDomain(tn.srv.URL)
	cc := linker.NewClientCredentials(base, "client-id", "client-secret-value", "", tn.srv.Client())
	c := newClient(t, tn.srv, cc)
	_, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
	if !linker.IsTokenExpired(err) || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("Link = %+v, %v; want the expired-token error", resp, err)
	}
	if n := tn.tokens(); n != 2 {
		t.Errorf("token endpoint issued %d tokens, want 2", n)
	}
	if strings.Contains(err.Error(), "issued-") {
		t.Errorf("error %q contains a token", err)
	}
}

func TestLinkReportsFailedRenewal(t *testing.T) {
	// The first token is issued, renewals are refused, and every token is
	// reported as expired.
	th := &tokenHandler{expiresIn: 86400}
	th.answer = func(n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			return false
		}
		writeJSON(w, http.StatusUnauthorized, `{"error":"access_denied","error_description":"Unauthorized"}`)
		return true
	}
	mux := http.NewServeMux()
	mux.Handle("POST /oauth/token", th)
	mux.HandleFunc("/api/v2/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusUnauthorized, `{"statusCode":401,"error":"Unauthorized","message":"Expired token received for JSON Web Token validation"}`)
	})
	srv := newServer(t, mux)
	c := newClient(t, srv, newCC(t, srv, nil))
	_, resp, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
	if resp == nil || resp.StatusCode != 401 || !linker.IsTokenExpired(err) || !strings.Contains(fmt.Sprint(err), "renew token: get token: 401") {
		t.Fatalf("Link = %+v, %v; want the expired answer and the renewal error", resp, err)
	}
	if th.fetches.Load() != 2 {
		t.Errorf("%d token fetches, want 2", th.fetches.Load())
	}
	if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), tokenName(1)) {
		t.Errorf("error %q reveals a secret", err)
	}
}
