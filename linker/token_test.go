package linker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

const (
	testClientID = "Xv9clientIDforTests"
	// testSecret has characters that form encoding changes.
	testSecret = "s3cr3t+/=&é-not-for-logs"
)

// tokenHandler answers client-credentials requests with numbered tokens
// that live expiresIn seconds; answer, when set, may answer instead (it
// returns false to let the token be issued).
type tokenHandler struct {
	expiresIn int
	fetches   atomic.Int32
	answer    func(n int32, w http.ResponseWriter, r *http.Request) bool
}

func (h *tokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.fetches.Add(1)
	if h.answer != nil && h.answer(n, w, r) {
		return
	}
	writeJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":"eyJ0eXAiOiJKV1QifQ.tok-%d.c2ln","expires_in":%d,"token_type":"Bearer"}`, n, h.expiresIn))
}

func tokenName(n int) string { return fmt.Sprintf("eyJ0eXAiOiJKV1QifQ.tok-%d.c2ln", n) }

// newCC returns a ClientCredentials for srv; hc nil means srv.Client().
func newCC(t *testing.T, srv *httptest.Server, hc *http.Client) *linker.ClientCredentials {
	t.Helper()
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if hc == nil {
		hc = srv.Client()
	}
	return linker.NewClientCredentials(base, testClientID, testSecret, "", hc)
}

func TestNewClientCredentials(t *testing.T) {
	base, _ := linker.ParseDomain("acme.eu.auth0.com")
	tests := []struct {
		audience     string
		wantAudience string
	}{
		{"", "https://acme.eu.auth0.com/api/v2/"},
		{"https://custom.example/api/v2/", "https://custom.example/api/v2/"},
	}
	for _, tt := range tests {
		cc := linker.NewClientCredentials(base, "id", "secret", tt.audience, nil)
		if cc.TokenURL != "https://acme.eu.auth0.com/oauth/token" || cc.Audience != tt.wantAudience ||
			cc.ClientID != "id" || cc.ClientSecret != "secret" || cc.HTTPClient != nil {
			t.Errorf("NewClientCredentials(audience %q) = {TokenURL:%q Audience:%q}, want audience %q",
				tt.audience, cc.TokenURL, cc.Audience, tt.wantAudience)
		}
	}
}

func TestClientCredentialsSendsForm(t *testing.T) {
	th := &tokenHandler{expiresIn: 86400}
	var base string
	th.answer = func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
			t.Errorf("request = %s %s, want POST /oauth/token", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type = %q", ct)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("Authorization = %q, want the credentials in the form only", a)
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		want := url.Values{
			"grant_type":    {"client_credentials"},
			"client_id":     {testClientID},
			"client_secret": {testSecret},
			"audience":      {base + "/api/v2/"},
		}
		if r.PostForm.Encode() != want.Encode() || r.URL.RawQuery != "" {
			t.Errorf("form = %v (query %q), want %v", r.PostForm, r.URL.RawQuery, want)
		}
		return false
	}
	srv := newServer(t, th)
	base = srv.URL
	cc := newCC(t, srv, nil)
	for range 3 {
		tok, err := cc.Token(t.Context())
		if err != nil || tok != tokenName(1) {
			t.Fatalf("Token = %q, %v; want %q", tok, err, tokenName(1))
		}
	}
	if n := th.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for 3 calls, want 1 (cached)", n)
	}
}

func TestClientCredentialsRenewsBeforeExpiry(t *testing.T) {
	tests := []struct {
		expiresIn   int
		cachedUntil time.Duration // still the first token at this age
		renewedBy   time.Duration // a new token at this age
	}{
		{expiresIn: 4, cachedUntil: 2900 * time.Millisecond, renewedBy: 3100 * time.Millisecond},           // renews with 1s left
		{expiresIn: 100, cachedUntil: 74 * time.Second, renewedBy: 76 * time.Second},                       // 25s left
		{expiresIn: 86400, cachedUntil: (86400 - 61) * time.Second, renewedBy: (86400 - 59) * time.Second}, // 60s left
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.expiresIn), func(t *testing.T) {
			th := &tokenHandler{expiresIn: tt.expiresIn}
			srv := newServer(t, th)
			synctest.Test(t, func(t *testing.T) {
				// No kept-alive connections: their goroutines would keep the
				// bubble's clock from advancing.
				hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				cc := newCC(t, srv, hc)
				tok, err := cc.Token(t.Context())
				if err != nil || tok != tokenName(1) {
					t.Fatalf("Token = %q, %v", tok, err)
				}
				time.Sleep(tt.cachedUntil)
				if tok, err := cc.Token(t.Context()); err != nil || tok != tokenName(1) {
					t.Errorf("at %v: Token = %q, %v; want the cached %q", tt.cachedUntil, tok, err, tokenName(1))
				}
				time.Sleep(tt.renewedBy - tt.cachedUntil)
				if tok, err := cc.Token(t.Context()); err != nil || tok != tokenName(2) {
					t.Errorf("at %v: Token = %q, %v; want the renewed %q", tt.renewedBy, tok, err, tokenName(2))
				}
				if n := th.fetches.Load(); n != 2 {
					t.Errorf("%d fetches, want 2", n)
				}
			})
		})
	}
}

func TestClientCredentialsEarlyRenewalFailure(t *testing.T) {
	th := &tokenHandler{expiresIn: 100} // renewal due at 75s
	var down atomic.Bool
	th.answer = func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		if down.Load() {
			writeJSON(w, http.StatusServiceUnavailable, `{"error":"temporarily_unavailable","error_description":"try later"}`)
			return true
		}
		return false
	}
	srv := newServer(t, th)
	synctest.Test(t, func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		cc := newCC(t, srv, hc)
		if _, err := cc.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		down.Store(true)
		steps := []struct {
			at          time.Duration
			wantTok     string
			wantFetches int32
			wantStatus  int
		}{
			{at: 80 * time.Second, wantTok: tokenName(1), wantFetches: 2},  // renewal fails, token still valid
			{at: 84 * time.Second, wantTok: tokenName(1), wantFetches: 2},  // not retried yet (5s gap)
			{at: 86 * time.Second, wantTok: tokenName(1), wantFetches: 3},  // retried, fails again
			{at: 101 * time.Second, wantStatus: 503, wantFetches: 4},       // expired: the error shows
			{at: 102 * time.Second, wantTok: tokenName(5), wantFetches: 5}, // back up
		}
		start := time.Now()
		for _, st := range steps {
			time.Sleep(time.Until(start.Add(st.at)))
			if st.at == 102*time.Second {
				down.Store(false)
			}
			tok, err := cc.Token(t.Context())
			if tok != st.wantTok || linker.StatusOf(err) != st.wantStatus || (st.wantStatus == 0) != (err == nil) {
				t.Errorf("at %v: Token = %q, %v; want %q, status %d", st.at, tok, err, st.wantTok, st.wantStatus)
			}
			if n := th.fetches.Load(); n != st.wantFetches {
				t.Errorf("at %v: %d fetches, want %d", st.at, n, st.wantFetches)
			}
		}
	})
}

func TestClientCredentialsSharesOneFetch(t *testing.T) {
	release := make(chan struct{})
	th := &tokenHandler{expiresIn: 86400}
	th.answer = func(_ int32, w http.ResponseWriter, r *http.Request) bool {
		<-release
		return false
	}
	srv := newServer(t, th)
	cc := newCC(t, srv, nil)
	const callers = 8
	toks := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { toks[i], errs[i] = cc.Token(t.Context()) })
	}
	close(release)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || toks[i] != tokenName(1) {
			t.Errorf("caller %d: Token = %q, %v", i, toks[i], errs[i])
		}
	}
	if n := th.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for %d concurrent callers, want 1", n, callers)
	}
}

func TestClientCredentialsRenew(t *testing.T) {
	th := &tokenHandler{expiresIn: 86400}
	cc := newCC(t, newServer(t, th), nil)
	ctx := t.Context()
	var r linker.Renewer = cc // ClientCredentials renews

	tok, _ := cc.Token(ctx)
	if err := r.Renew(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := cc.Token(ctx); got != tokenName(2) {
		t.Errorf("after Renew: Token = %q, want %q", got, tokenName(2))
	}
	// A late Renew for the old token changes nothing.
	if err := r.Renew(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := cc.Token(ctx); got != tokenName(2) || th.fetches.Load() != 2 {
		t.Errorf("after a stale Renew: Token = %q with %d fetches, want %q and 2", got, th.fetches.Load(), tokenName(2))
	}
	// Many callers renewing the same token cause one fetch.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := r.Renew(ctx, tokenName(2)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, _ := cc.Token(ctx); got != tokenName(3) || th.fetches.Load() != 3 {
		t.Errorf("after concurrent Renew: Token = %q with %d fetches, want %q and 3", got, th.fetches.Load(), tokenName(3))
	}
}

func TestClientCredentialsWaitsRespectContext(t *testing.T) {
	release := make(chan struct{}) // lets the second fetch answer
	stop := make(chan struct{})
	arrived := make(chan struct{}, 4)
	th := &tokenHandler{expiresIn: 86400}
	th.answer = func(n int32, w http.ResponseWriter, r *http.Request) bool {
		_ = r.ParseForm() // read the body, so that a client leaving is noticed
		arrived <- struct{}{}
		if n == 1 {
			select { // the first fetch never answers
			case <-r.Context().Done():
			case <-stop:
			}
			return true
		}
		select {
		case <-release:
			return false
		case <-stop:
			return true
		}
	}
	srv := newServer(t, th)
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	cc := newCC(t, srv, nil)

	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := cc.Token(leaderCtx)
		leaderErr <- err
	}()
	<-arrived // the fetch is under way and blocked

	// A waiter whose context ends returns while the fetch is still blocked.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if tok, err := cc.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter: Token = %q, %v; want context.DeadlineExceeded", tok, err)
	}
	// The fetching caller gives up too.
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: error = %v, want context.Canceled", err)
	}
	// The next caller fetches afresh.
	done := make(chan error, 1)
	go func() {
		_, err := cc.Token(t.Context())
		done <- err
	}()
	<-arrived
	close(release)
	if err := <-done; err != nil {
		t.Errorf("next caller: %v", err)
	}
	if n := th.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	escaped := url.QueryEscape(testSecret)
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantCode   string
		wantText   string
	}{
		{
			name: "access denied",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 401, `{"error":"access_denied","error_description":"Unauthorized"}`)
			},
			wantStatus: 401, wantCode: "access_denied", wantText: "get token: 401 Unauthorized: Unauthorized (access_denied)",
		},
		{
			name: "no client grant",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 403, `{"error":"unauthorized_client","error_description":"Client is not authorized to access \"https://acme/api/v2/\"."}`)
			},
			wantStatus: 403, wantCode: "unauthorized_client", wantText: "Client is not authorized",
		},
		{
			name: "secret echoed in JSON",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				writeJSON(w, 401, fmt.Sprintf(`{"error":"invalid_client","error_description":"bad secret %s (%s)"}`,
					r.PostForm.Get("client_secret"), escaped))
			},
			wantStatus: 401, wantCode: "invalid_client", wantText: "bad secret [REDACTED] ([REDACTED])",
		},
		{
			name: "form echoed in text",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(500)
				_, _ = fmt.Fprintf(w, "<pre>%s</pre>", b)
			},
			wantStatus: 500, wantText: "(body withheld: it contained a credential)",
		},
		{
			name: "rate limited",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "3")
				writeJSON(w, 429, `{"error":"too_many_requests","error_description":"Rate limit exceeded. Please retry after some time."}`)
			},
			wantStatus: 429, wantCode: "too_many_requests", wantText: "reset at",
		},
		{
			name: "not a bearer token",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, `{"access_token":"eyJ0eXAiOiJKV1QifQ.tok-mac.c2ln","token_type":"mac","expires_in":60}`)
			},
			wantText: `unexpected token type "MAC"`,
		},
		{
			name: "no access token",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, `{"token_type":"Bearer","expires_in":60}`)
			},
			wantText: "missing access_token",
		},
		{
			name: "garbage",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, `<html>`)
			},
			wantText: "get token: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handler)
			cc := newCC(t, srv, nil)
			tok, err := cc.Token(t.Context())
			if err == nil {
				t.Fatalf("Token = %q, want an error", tok)
			}
			if !strings.HasPrefix(err.Error(), "get token: ") || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error = %q, want %q in it", err, tt.wantText)
			}
			if linker.StatusOf(err) != tt.wantStatus {
				t.Errorf("StatusOf = %d, want %d", linker.StatusOf(err), tt.wantStatus)
			}
			var ae *linker.APIError
			if errors.As(err, &ae) && ae.Code != tt.wantCode {
				t.Errorf("Code = %q, want %q", ae.Code, tt.wantCode)
			}
			dump := fmt.Sprintf("%v %+v", err, err)
			for _, s := range []string{testSecret, escaped, "tok-mac"} {
				if strings.Contains(dump, s) {
					t.Errorf("error reveals %q: %s", s, dump)
				}
			}
			// Through the Client, the same error is the link's.
			c := newClient(t, srv, cc)
			_, resp, lerr := c.Link(t.Context(), linker.LinkRequest{PrimaryID: primary, Provider: "auth0", UserID: "x"})
			if resp != nil || !strings.HasPrefix(fmt.Sprint(lerr), "link "+primary+": get token: ") ||
				linker.StatusOf(lerr) != tt.wantStatus || strings.Contains(fmt.Sprint(lerr), testSecret) {
				t.Errorf("Link = %+v, %v; want the token error", resp, lerr)
			}
		})
	}
}

func TestClientCredentialsConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cc   *linker.ClientCredentials
		want string
	}{
		{"no URL", &linker.ClientCredentials{ClientID: "a", ClientSecret: "b"}, "no token URL"},
		{"no id", &linker.ClientCredentials{TokenURL: "https://x/oauth/token", ClientSecret: "b"}, "no client id"},
		{"no secret", &linker.ClientCredentials{TokenURL: "https://x/oauth/token", ClientID: "a"}, "no client secret"},
		{"nil base", linker.NewClientCredentials(nil, "a", "b", "", nil), "no token URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cc.Token(t.Context()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Token error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStaticToken(t *testing.T) {
	ts := linker.StaticToken(testToken)
	if _, ok := ts.(linker.Renewer); ok {
		t.Error("StaticToken implements Renewer")
	}
	if tok, err := ts.Token(t.Context()); tok != testToken || err != nil {
		t.Errorf("Token = %q, %v", tok, err)
	}
	if _, err := linker.StaticToken("").Token(t.Context()); err == nil {
		t.Error("empty StaticToken gave no error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ts.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token with a canceled ctx = %v", err)
	}
}
