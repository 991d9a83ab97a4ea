package linker_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// sink is a server that records whether it received anything.
type sink struct {
	hits atomic.Int32
	body atomic.Value // string: the last body received
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	b, _ := io.ReadAll(r.Body)
	s.body.Store(string(b))
	writeJSON(w, http.StatusOK, `{"access_token":"eyJ0eXAiOiJKV1QifQ.stolen.c2ln","expires_in":60,"token_type":"Bearer"}`)
}

func TestClientCredentialsRefusesRedirects(t *testing.T) {
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		for _, hcName := range []string{"given client", "default client"} {
			t.Run(fmt.Sprintf("%d/%s", status, hcName), func(t *testing.T) {
				var elsewhere sink
				other := newServer(t, &elsewhere)
				srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Location", other.URL+"/collect?path=secret-path")
					w.WriteHeader(status)
				}))
				var hc *http.Client
				if hcName == "given client" {
					hc = &http.Client{Transport: http.DefaultTransport} // follows redirects by default
				}
				base, err := linker.ParseDomain(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				cc := linker.NewClientCredentials(base, testClientID, testSecret, "", hc)
				tok, err := cc.Token(t.Context())
				if err == nil {
					t.Fatalf("Token = %q, want an error", tok)
				}
				if n := elsewhere.hits.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests (body %q)", n, elsewhere.body.Load())
				}
				if linker.StatusOf(err) != status {
					t.Errorf("StatusOf(%v) = %d, want %d", err, linker.StatusOf(err), status)
				}
				host := strings.TrimPrefix(other.URL, "http://")
				if !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), fmt.Sprint(status)) {
					t.Errorf("error %q: want the status and the Location host %s", err, host)
				}
				if strings.Contains(err.Error(), "secret-path") || strings.Contains(err.Error(), "collect") {
					t.Errorf("error %q names more of the Location than its host", err)
				}
			})
		}
	}
}

// hasPrefixOf reports whether s contains a prefix of secret of at least n
// bytes.
func hasPrefixOf(s, secret string, n int) bool {
	return len(secret) >= n && strings.Contains(s, secret[:n])
}

func TestErrorBodyMasksBeforeCutting(t *testing.T) {
	// Each server answers 500 with a text body in which a secret starts a
	// few bytes before the 200th byte, where non-JSON messages are cut.
	pad := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name string
		body func(r *http.Request, reqBody string) string
	}{
		{"echoed request", func(r *http.Request, b string) string {
			return pad(160) + " Authorization: " + r.Header.Get("Authorization") + " body " + b
		}},
		{"bare token", func(r *http.Request, b string) string {
			return pad(190) + " " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + " end"
		}},
		{"bare link_with JWT", func(r *http.Request, b string) string {
			return pad(185) + " " + testJWT + " end"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, tt.body(r, string(b)))
			}))
			c := newClient(t, srv, linker.StaticToken(testToken))
			_, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, LinkWith: testJWT})
			var ae *linker.APIError
			if !errors.As(err, &ae) || ae.Status != 500 {
				t.Fatalf("Link error = %v, want a 500 *APIError", err)
			}
			for _, sec := range []string{testToken, testJWT} {
				if hasPrefixOf(err.Error(), sec, 8) || hasPrefixOf(ae.Message, sec, 8) {
					t.Errorf("error %q holds a prefix of a secret", err)
				}
			}
		})
	}
	t.Run("token endpoint echoes the form", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			form := string(b)
			i := strings.Index(form, url.QueryEscape(testSecret))
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, pad(max(0, 195-i))+form) // the secret straddles byte 200
		}))
		_, err := newCC(t, srv, nil).Token(t.Context())
		if err == nil {
			t.Fatal("Token: want an error")
		}
		for _, sec := range []string{testSecret, url.QueryEscape(testSecret)} {
			if hasPrefixOf(err.Error(), sec, 6) {
				t.Errorf("error %q holds a prefix of the client secret", err)
			}
		}
		if !strings.Contains(err.Error(), "withheld") {
			t.Errorf("error %q: want the body withheld", err)
		}
	})
}

func TestRedactionKeepsErrorTypes(t *testing.T) {
	t.Run("429 quoting the token", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, "too many requests for "+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		}))
		c := newClient(t, srv, linker.StaticToken(testToken))
		_, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "google-oauth2", UserID: "1"})
		var rl *linker.RateLimitError
		if !errors.As(err, &rl) {
			t.Fatalf("error %v (%T) is not a *RateLimitError after redaction", err, err)
		}
		if rl.Reset.IsZero() || rl.Reset.Before(time.Now()) {
			t.Errorf("Reset = %v, want about 2s from now", rl.Reset)
		}
		if strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "[REDACTED]") {
			t.Errorf("error %q: want the token masked", err)
		}
	})
	t.Run("429 with a one-letter token", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			writeJSON(w, http.StatusTooManyRequests, `{"statusCode":429,"error":"Too Many Requests","message":"Global limit has been reached"}`)
		}))
		c := newClient(t, srv, linker.StaticToken("T"))
		_, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "google-oauth2", UserID: "1"})
		var rl *linker.RateLimitError
		if !errors.As(err, &rl) {
			t.Fatalf("error %v (%T) is not a *RateLimitError after redaction", err, err)
		}
	})
	t.Run("short token is not searched for in prose", func(t *testing.T) {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusForbidden, `{"statusCode":403,"error":"Forbidden","message":"Insufficient scope, expected any of: update:users","errorCode":"insufficient_scope"}`)
		}))
		c := newClient(t, srv, linker.StaticToken("x"))
		_, _, err := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "google-oauth2", UserID: "1"})
		var ae *linker.APIError
		if !errors.As(err, &ae) || ae.Status != 403 {
			t.Fatalf("error %v is not a 403 *APIError", err)
		}
		if ae.Message != "Insufficient scope, expected any of: update:users" {
			t.Errorf("Message = %q, mangled", ae.Message)
		}
	})
}
